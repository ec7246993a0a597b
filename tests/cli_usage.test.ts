// Usage errors through the real entry point: exit code 2, exactly one line on stderr that says
// what is wrong (with a did-you-mean for config keys), and nothing on stdout.
import assert from "node:assert/strict";
import { join } from "node:path";
import { runCli } from "./helpers/run_cli.ts";

interface Case {
  args: string[];
  /** The whole stderr line. */
  error: RegExp;
}

const MISSING = "/nonexistent/duaf-run";

const CASES: Case[] = [
  { args: ["tran"], error: /^duaf: unknown command 'tran' \(see duaf help\)$/ },
  {
    args: ["train", "ds", "--out", "r", "--bogus"],
    error: /^duaf train: Unknown option '--bogus' \(see duaf train --help\)$/,
  },
  {
    args: ["eval", "r", "--topk", "5"],
    error: /^duaf eval: Unknown option '--topk' \(see duaf eval --help\)$/,
  },
  {
    args: ["train", "ds", "--out", "r", "--set", "hiden=16"],
    error: /^duaf train: --set: unknown config key 'hiden' \(did you mean 'hidden'\?\)$/,
  },
  {
    args: ["train", "ds", "--out", "r", "--set", "duafmat.expert=4"],
    error: /unknown config key 'duafmat\.expert' \(did you mean 'duafmat\.experts'\?\)$/,
  },
  {
    args: ["train", "ds", "--out", "r", "--set", "lr=fast"],
    error: /^duaf train: config: lr: .+$/,
  },
  { args: ["train", "ds"], error: /^duaf train: --out RUN is required/ },
  { args: ["train", "--resume", MISSING], error: /^duaf train: .*not a duaf run/ },
  { args: ["eval"], error: /^duaf eval: RUN is required \(see duaf help eval\)$/ },
  {
    args: ["eval", MISSING, "--quiet"],
    error: /^duaf eval: \/nonexistent\/duaf-run: not a duaf run/,
  },
  { args: ["eval", MISSING, "--split", "train"], error: /--split: expected one of valid, test/ },
  { args: ["recommend"], error: /^duaf recommend: .*RUN/ },
  { args: ["report", "--out", "x.html"], error: /^duaf report: RUN is required/ },
  { args: ["report", MISSING], error: /^duaf report: --out FILE is required/ },
];

for (const c of CASES) {
  Deno.test(`usage error: duaf ${c.args.join(" ")}`, async () => {
    const r = await runCli(c.args);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stdout, "");
    assert.equal(r.stderr.split("\n").length, 1, r.stderr);
    assert.match(r.stderr, c.error);
  });
}

Deno.test("report on a missing run writes nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "duaf-cli-usage-" });
  try {
    const out = join(dir, "report.html");
    const r = await runCli(["report", MISSING, "--out", out, "--backend", "js", "--quiet"]);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, `duaf report: ${MISSING}: not a duaf run (no manifest.json)`);
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
