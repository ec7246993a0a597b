// tools/device_sweep.sh on this machine's CPU: the bundled CLI (as tools/device_pack.sh builds it)
// rebuilds the dataset from the pack's raw files, continues two kept records at once, each in two
// processes, and writes the grown records back. A GPU session has minutes; this is where the
// script is tested.
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
  name: "device_sweep.sh: kept records continued from the bundle, grown and written back",
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
      // The records: sweeps planned here and kept before any run (as docs/results holds them).
      const ds = await tinyDataset(root);
      const plans = { first: tinySweepPlan(ds, "1,2"), second: tinySweepPlan(ds, "3") };
      for (const [name, plan] of Object.entries(plans)) {
        const work = join(root, "work", name);
        const made = await runCli([...plan, "--out", work, "--time-limit", "0", "--quiet"]);
        assert.equal(made.code, 75, made.stderr);
        assert.equal((await runCli(["sweep", "keep", work, join(root, "records", name)])).code, 0);
      }

      const out = join(root, "out");
      const r = await new Deno.Command("bash", {
        args: [join(ROOT, "tools/device_sweep.sh")],
        cwd: ROOT,
        env: {
          DENO: Deno.execPath(),
          DUAF_DEVICE_PACK: pack,
          OUT: out,
          DUAF_SWEEP_RECORD: `${join(root, "records/first")} ${join(root, "records/second")}`,
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
      const status = await Deno.readTextFile(join(out, "status.md"));
      assert.match(status, /2 of 2 runs done/);
      assert.match(status, /1 of 1 runs done/);
      assert.ok((await Deno.stat(join(out, "logs.tar.gz"))).size > 0);
      const byRun = async (f: string) =>
        Object.fromEntries(
          (await Deno.readTextFile(f)).trim().split("\n").map((l) => JSON.parse(l))
            .map((x) => [x.seed, x.test]),
        );
      // Each grown record is the runs a plain sweep here gives: the same seeds, the same metrics.
      for (const [name, plan] of Object.entries(plans)) {
        const work = join(root, "work", name);
        const here = await runCli([...plan, "--out", work, "--quiet"]);
        assert.equal(here.code, 0, here.stderr);
        const grown = await byRun(join(out, "records", name, "results.jsonl"));
        assert.deepEqual(Object.keys(grown).sort(), name === "first" ? ["1", "2"] : ["3"]);
        assert.deepEqual(grown, await byRun(join(work, "results.jsonl")));
      }
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});
