// Real processes, real pipes: every command's stdout is clean JSON/JSONL (each line parses) that a
// pipeline can consume, while logs and progress go to stderr; a failing command prints nothing on
// stdout and exits with its documented code.
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadDataset } from "../core/data/dataset.ts";
import { MAIN_TS, setFlags, TINY_SETS } from "./helpers/tiny_run.ts";

const FIXTURE = new URL("../fixtures/beauty-mini/", import.meta.url).pathname;

interface Spawned {
  code: number;
  stdout: string;
  stderr: string;
}

async function duaf(args: string[], stdin?: string): Promise<Spawned> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN_TS, ...args],
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Parses every stdout line as JSON; fails on any line that does not parse. */
function jsonLines(r: Spawned, what: string): Record<string, unknown>[] {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stderr}`);
  assert.ok(r.stdout.endsWith("\n"), `${what}: stdout does not end with a newline`);
  return r.stdout.slice(0, -1).split("\n").map((line, i) => {
    try {
      return JSON.parse(line);
    } catch {
      assert.fail(`${what}: stdout line ${i + 1} is not JSON: ${line.slice(0, 120)}`);
    }
  });
}

Deno.test("stdout carries only JSON; logs go to stderr", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "duaf-cli-stdout-" });
  try {
    const ds = join(root, "ds");
    const run = join(root, "run");

    await t.step("preprocess", async () => {
      const r = await duaf([
        "preprocess",
        "--format",
        "amazon2014",
        "--reviews",
        join(FIXTURE, "reviews_Beauty_5.json.gz"),
        "--meta",
        join(FIXTURE, "meta_Beauty.json.gz"),
        "--out",
        ds,
      ]);
      const [summary, ...rest] = jsonLines(r, "preprocess");
      assert.equal(rest.length, 0);
      assert.equal(summary.out, ds);
      assert.match(r.stderr, /writing/);
    });

    await t.step("inspect --json", async () => {
      const lines = jsonLines(await duaf(["inspect", ds, "--json"]), "inspect");
      assert.equal(lines.length, 1);
      assert.equal(typeof lines[0].users, "number");
    });

    await t.step("train (logging to stderr)", async () => {
      const r = await duaf([
        "train",
        ds,
        "--out",
        run,
        ...setFlags(TINY_SETS),
        "--backend",
        "wasm",
      ]);
      const lines = jsonLines(r, "train");
      assert.equal(lines.length, 1);
      assert.equal(lines[0].status, "finished");
      assert.match(r.stderr, /^backend: wasm/m);
      assert.match(r.stderr, /^epoch 2: .*valid/m);
    });

    await t.step("eval", async () => {
      const r = await duaf(["eval", run, "--backend", "wasm"]);
      const lines = jsonLines(r, "eval");
      assert.equal(lines.length, 1);
      assert.equal(typeof (lines[0].metrics as Record<string, number>)["ndcg@10"], "number");
      assert.match(r.stderr, /^backend: wasm/m);
    });

    await t.step("recommend: one JSON line per request", async () => {
      const users = (await loadDataset(ds)).userIds();
      const r = await duaf(
        ["recommend", run, "--stdin", "--k", "3", "--backend", "wasm"],
        [users[1], users[2], users[3]].map((u) => JSON.stringify({ user: u })).join("\n") + "\n",
      );
      const lines = jsonLines(r, "recommend");
      assert.deepEqual(lines.map((l) => l.user), [users[1], users[2], users[3]]);
      for (const l of lines) assert.equal((l.items as string[]).length, 3);
    });

    await t.step("report", async () => {
      const out = join(root, "report.html");
      const lines = jsonLines(
        await duaf(["report", run, "--out", out, "--backend", "wasm"]),
        "report",
      );
      assert.equal(lines.length, 1);
      assert.equal(lines[0].report, out);
    });

    await t.step("a failing command: nothing on stdout, one line on stderr, exit 2", async () => {
      const r = await duaf(["eval", join(root, "no-such-run"), "--quiet"]);
      assert.equal(r.code, 2);
      assert.equal(r.stdout, "");
      assert.match(r.stderr, /^duaf eval: .*no-such-run: not a duaf run \(no manifest\.json\)\n$/);
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
