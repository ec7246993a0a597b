// tools/device_sweep.sh on this machine's CPU: the bundled CLI (as tools/device_pack.sh builds it)
// rebuilds the dataset from the pack's raw files, continues a kept record in two processes and
// writes the grown record back. A GPU session has minutes; this is where the script is tested.
import assert from "node:assert/strict";
import { join } from "node:path";
import { runCli } from "./helpers/run_cli.ts";
import { tinyDataset, tinySweepPlan } from "./helpers/tiny_run.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const FIXTURE = join(ROOT, "fixtures/beauty-mini");
const hasBash = await new Deno.Command("bash", { args: ["-c", "true"] }).output().then(
  (r) => r.success,
  () => false,
);

Deno.test({
  name: "device_sweep.sh: a kept record continued from the bundle, grown and written back",
  ignore: !hasBash,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "duaf-device-sweep-" });
    try {
      const pack = join(root, "pack");
      await Deno.mkdir(pack);
      const bundle = await new Deno.Command(Deno.execPath(), {
        args: [
          "bundle",
          "--platform",
          "deno",
          "--external",
          "@duckdb/*",
          "-o",
          join(pack, "duaf.js"),
          join(ROOT, "cli/main.ts"),
        ],
        cwd: ROOT,
        stdout: "null",
        stderr: "piped",
      }).output();
      assert.ok(bundle.success, new TextDecoder().decode(bundle.stderr));
      for (const f of ["reviews_Beauty_5.json.gz", "meta_Beauty.json.gz"]) {
        await Deno.copyFile(join(FIXTURE, f), join(pack, f));
      }
      // The record: a sweep planned here and kept before any run (as docs/results holds them).
      const ds = await tinyDataset(root);
      const work = join(root, "work");
      const plan = tinySweepPlan(ds, "1,2");
      const made = await runCli([...plan, "--out", work, "--time-limit", "0", "--quiet"]);
      assert.equal(made.code, 75, made.stderr);
      const record = join(root, "record");
      assert.equal((await runCli(["sweep", "keep", work, record])).code, 0);

      const out = join(root, "out");
      const r = await new Deno.Command("bash", {
        args: [join(ROOT, "tools/device_sweep.sh")],
        cwd: ROOT,
        env: {
          DENO: Deno.execPath(),
          DUAF_DEVICE_PACK: pack,
          OUT: out,
          DUAF_SWEEP_RECORD: record,
          DUAF_SWEEP_DATA: "beauty",
          DUAF_SWEEP_PROCS: "2",
          DUAF_SWEEP_LIMIT: "600",
          DUAF_SWEEP_BACKEND: "wasm",
          DUAF_SWEEP_WORK: join(root, "scratch"),
        },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const log = new TextDecoder().decode(r.stderr);
      assert.equal(r.code, 0, log);
      const lines = (await Deno.readTextFile(join(out, "record/results.jsonl"))).trim().split("\n");
      assert.deepEqual(lines.map((l) => JSON.parse(l).seed).sort(), [1, 2]);
      assert.match(await Deno.readTextFile(join(out, "status.md")), /2 of 2 runs done/);
      assert.ok((await Deno.stat(join(out, "logs.tar.gz"))).size > 0);
      // The grown record is the runs a plain sweep here gives: the same metrics.
      const here = await runCli([...plan, "--out", work, "--quiet"]);
      assert.equal(here.code, 0, here.stderr);
      const byRun = async (f: string) =>
        Object.fromEntries(
          (await Deno.readTextFile(f)).trim().split("\n").map((l) => JSON.parse(l))
            .map((x) => [x.run, x.test]),
        );
      assert.deepEqual(
        await byRun(join(out, "record/results.jsonl")),
        await byRun(join(work, "results.jsonl")),
      );
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});
