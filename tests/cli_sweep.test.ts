// `duaf sweep`: grid expansion and sampling, a 2x2 grid x 2 seeds whose runs equal plain
// `duaf train` runs byte for byte, the table's mean ± sd, resuming after kill -9 and after an
// interruption mid-run, two processes sharing one sweep, stale locks, the grid change policy,
// --out safety and the sweep report.
import assert from "node:assert/strict";
import { join } from "node:path";
import { resolveConfig, type TrainConfig } from "../core/config.ts";
import { ID_BASELINE } from "../core/sweep/id_baseline.ts";
import { DataError } from "../core/errors.ts";
import { Rng } from "../core/random.ts";
import { Claims, type LockInfo, processStart } from "../core/sweep/claims.ts";
import {
  configId,
  expandGrid,
  gridSize,
  nonDefaults,
  parseGrid,
  planRuns,
  pointAt,
  runId,
  sampleGrid,
} from "../core/sweep/grid.ts";
import { aggregate, meanSd, readResults, type ResultLine } from "../core/sweep/results.ts";
import type { SweepStatus } from "../core/sweep/status.ts";
import { readSweepManifest, runSweep } from "../core/sweep/sweep.ts";
import { activateBackend } from "../core/train/run.ts";
import { htmlProblems } from "./helpers/html_check.ts";
import { runCli } from "./helpers/run_cli.ts";
import {
  MAIN_TS,
  setFlags,
  TINY_SETS,
  tinyDataset,
  tinyTrain,
  tinyTrainArgs,
} from "./helpers/tiny_run.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const GRID = { lr: [0.001, 0.003], hidden: [16, 32] };
const SEEDS = "1,2";

function sweepArgs(ds: string, grid: string, out: string, extra: string[] = []): string[] {
  return [
    "sweep",
    ds,
    "--grid",
    grid,
    "--seeds",
    SEEDS,
    "--out",
    out,
    ...setFlags(TINY_SETS),
    "--backend",
    "wasm",
    ...extra,
  ];
}

function childSweep(args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN_TS, ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

async function sameBytes(a: string, b: string): Promise<boolean> {
  const x = await Deno.readFile(a);
  const y = await Deno.readFile(b);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/** Every run of `sweep` has the checkpoint bytes of the same run in `reference`. */
async function assertSameRuns(reference: string, sweep: string): Promise<void> {
  const ids = (await readSweepManifest(reference))!.runs.map((r) => r.id);
  assert.equal(ids.length, 8);
  for (const id of ids) {
    for (const f of ["model.safetensors", "state.safetensors"]) {
      assert.ok(
        await sameBytes(join(reference, "runs", id, f), join(sweep, "runs", id, f)),
        `${id}/${f} bytes differ`,
      );
    }
  }
}

/** results.jsonl: raw lines, each a full JSON object, one per run id. */
async function resultLines(sweep: string): Promise<ResultLine[]> {
  const text = await Deno.readTextFile(join(sweep, "results.jsonl"));
  assert.ok(text.endsWith("\n"));
  const lines = text.trimEnd().split("\n").map((l) => JSON.parse(l) as ResultLine);
  assert.equal(new Set(lines.map((l) => l.run)).size, lines.length, "a run has two lines");
  return lines;
}

async function mtimes(sweep: string, ids: string[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const id of ids) {
    for (const f of ["model.safetensors", "state.safetensors", "manifest.json"]) {
      const st = await Deno.stat(join(sweep, "runs", id, f));
      out.set(`${id}/${f}`, st.mtime!.getTime());
    }
  }
  return out;
}

Deno.test("sweep grid: expansion, sampling and validation", () => {
  const grid = parseGrid(
    { lr: [1e-3, 3e-3, 1e-2], "duafmat.experts": [2, 4], duafmat: { tau: 0.5 }, model: "duafmat" },
    "g.json",
  );
  assert.deepEqual(grid.map(([k]) => k), ["lr", "duafmat.experts", "duafmat.tau", "model"]);
  assert.equal(gridSize(grid), 6);
  const all = expandGrid(grid);
  assert.equal(all.length, 6);
  // The first key is outermost.
  assert.deepEqual(all.map((p) => [p.lr, p["duafmat.experts"]]), [
    [1e-3, 2],
    [1e-3, 4],
    [3e-3, 2],
    [3e-3, 4],
    [1e-2, 2],
    [1e-2, 4],
  ]);
  assert.deepEqual(pointAt(grid, 3), {
    lr: 3e-3,
    "duafmat.experts": 4,
    "duafmat.tau": 0.5,
    model: "duafmat",
  });
  // validKs takes lists: a flat list is one value, a list of lists several.
  assert.deepEqual(parseGrid({ validKs: [5, 10] }, "g")[0][1], [[5, 10]]);
  assert.deepEqual(parseGrid({ validKs: [[5], [10]] }, "g")[0][1], [[5], [10]]);

  // Random draws: reproducible per seed, distinct points, and a larger N draws a superset.
  const big = parseGrid({ lr: [1, 2, 3, 4, 5], hidden: [8, 16, 32, 64], layers: [1, 2, 3] }, "g");
  const key = (p: Record<string, unknown>) => JSON.stringify(p);
  const a = sampleGrid(big, 7, new Rng(5)).map(key);
  assert.deepEqual(sampleGrid(big, 7, new Rng(5)).map(key), a);
  assert.equal(new Set(a).size, 7);
  assert.notDeepEqual(sampleGrid(big, 7, new Rng(6)).map(key), a);
  const more = new Set(sampleGrid(big, 12, new Rng(5)).map(key));
  assert.ok(a.every((p) => more.has(p)), "a larger draw must contain the smaller one");
  const allKeys = expandGrid(big).map(key);
  assert.ok(a.every((p) => allKeys.includes(p)));
  assert.deepEqual(sampleGrid(big, 100, new Rng(5)).map(key), allKeys);

  // Every configuration is validated; errors name the grid file and the key.
  const base = resolveConfig(null, []);
  const bad = (raw: unknown, pattern: RegExp) =>
    assert.throws(
      () => planRuns(base, expandGrid(parseGrid(raw, "g.json")), [1], "g.json"),
      (e) => {
        assert.ok(e instanceof DataError, String(e));
        assert.match(e.message, pattern);
        assert.doesNotMatch(e.message, /\n/);
        return true;
      },
    );
  bad({ lr: [1e-3], lrr: [1] }, /^g\.json: lrr: unknown config key 'lrr' \(did you mean 'lr'\?\)/);
  bad({ lr: [1e-3, -1] }, /^g\.json: lr: /);
  bad({ "duafmat.timeDim": [16, 15] }, /^g\.json: duafmat\.timeDim: /);
  bad({ model: ["sasrec", "bert5rec"] }, /^g\.json: model: /);
  assert.throws(
    () => parseGrid({ seed: [1, 2] }, "g.json"),
    /g\.json: seed: seeds come from --seeds/,
  );
  assert.throws(() => parseGrid([1], "g.json"), /g\.json: expected a JSON object/);
  assert.throws(() => parseGrid({ lr: [] }, "g.json"), /g\.json: lr: empty list/);

  // Run ids: readable, stable, different per seed and per base config.
  const { runs } = planRuns(base, expandGrid(parseGrid({ lr: [1e-3] }, "g")), [1, 2], "g");
  assert.match(runs[0].id, /^lr=0\.001_seed=1-[0-9a-f]{8}$/);
  assert.notEqual(runs[0].id.slice(-8), runs[1].id.slice(-8));
  assert.equal(runs[0].id, runId({ ...base, lr: 1e-3 }, { lr: 1e-3 }, 1));
  assert.notEqual(runs[0].id, runId({ ...base, lr: 1e-3, epochs: 3 }, { lr: 1e-3 }, 1));
});

Deno.test("sweep ids hash only non-default values, so new default keys keep them", () => {
  const base = resolveConfig(null, ["lr=0.003", "duafmat.experts=6", "hidden=64"]);
  // hidden=64 is the default: it is not part of the identity.
  assert.deepEqual(nonDefaults(base), { lr: 0.003, duafmat: { experts: 6 } });
  assert.deepEqual(nonDefaults(resolveConfig(null, [])), {});
  // A config that lacks a key entirely (as one written before that key existed) hashes the same
  // as one holding the key at its default.
  const older = structuredClone(base) as Record<string, unknown>;
  delete older.windowEnd;
  delete (older.duafmat as Record<string, unknown>).hideImages;
  assert.equal(configId(older as typeof base), configId(base));
  assert.equal(runId(older as typeof base, { lr: 0.003 }, 1), runId(base, { lr: 0.003 }, 1));
  assert.notEqual(runId(base, { lr: 0.003 }, 1), runId(base, { lr: 0.003 }, 2));
  assert.notEqual(configId(resolveConfig(null, ["lr=0.01"])), configId(base));
});

Deno.test("sweep ids: every config key has an id baseline, and a changed default changes ids", () => {
  const current = resolveConfig(null, []) as Record<string, unknown>;
  const missing = Object.keys(current).filter((k) => !(k in ID_BASELINE));
  const inner = ID_BASELINE.duafmat as Record<string, unknown>;
  missing.push(...Object.keys(current.duafmat as object).filter((k) => !(k in inner)));
  assert.deepEqual(missing, [], "add these keys' defaults to core/sweep/id_baseline.ts");
  // Were patience's default changed, the baseline would keep the old value: a run under the new
  // default is then part of the identity, so it cannot reuse a result of the old default.
  const olderBaseline = { ...ID_BASELINE, patience: (current.patience as number) + 5 };
  assert.deepEqual(nonDefaults(current as TrainConfig, olderBaseline), {
    patience: current.patience,
  });
  assert.deepEqual(nonDefaults(current as TrainConfig), {});
});

Deno.test("sweep results: mean and sample sd per configuration, best by valid mean", () => {
  const line = (configId: string, seed: number, v: number, t: number): ResultLine => ({
    run: `${configId}-${seed}`,
    configId,
    point: {},
    seed,
    config: { ...resolveConfig(null, []), lr: configId === "a" ? 1e-3 : 3e-3 },
    bestEpoch: 1,
    epochs: 1,
    stopped: null,
    valid: { "ndcg@10": v },
    test: { "ndcg@10": t },
    seconds: 1,
  });
  const t = aggregate(
    [line("a", 1, 0.1, 0.5), line("b", 1, 0.2, 0.6), line("a", 2, 0.3, 0.7), line("b", 2, 0.3, 0)],
    ["lr"],
    "ndcg@10",
  );
  assert.deepEqual(t.rows.map((r) => r.values.lr), [1e-3, 3e-3]);
  assert.equal(t.rows[0].valid.mean, 0.2);
  assert.ok(Math.abs(t.rows[0].valid.sd - Math.sqrt(0.02)) < 1e-12);
  assert.ok(Math.abs(t.rows[1].valid.mean - 0.25) < 1e-12);
  assert.equal(t.best, t.rows[1]);
  assert.ok(t.rows[1].best && !t.rows[0].best);
  assert.ok(Number.isNaN(meanSd([1]).sd));
});

Deno.test("stale locks: dead or reused pids and old heartbeats are reclaimed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "duaf-sweep-locks-" });
  try {
    const host = Deno.hostname();
    const done = await new Deno.Command("true").spawn();
    const deadPid = done.pid;
    await done.status;
    const sleeper = new Deno.Command("sleep", { args: ["30"] }).spawn();
    try {
      const write = (name: string, info: Partial<LockInfo>) =>
        Deno.writeTextFileSync(
          join(dir, `${name}.lock`),
          JSON.stringify({ host, start: null, token: name, at: "then", ...info }),
        );
      const start = processStart(sleeper.pid);
      assert.equal(typeof start, "number", "this test needs /proc");
      write("dead", { pid: deadPid });
      write("live", { pid: sleeper.pid, start: start as number });
      write("reused", { pid: sleeper.pid, start: (start as number) + 1 });
      write("remote-fresh", { host: "elsewhere", pid: 1 });
      write("remote-old", { host: "elsewhere", pid: 1 });
      const old = new Date(Date.now() - 11 * 60_000);
      Deno.utimeSync(join(dir, "remote-old.lock"), old, old);

      const reclaimed: string[] = [];
      const claims = new Claims(dir, { onReclaim: (n) => reclaimed.push(n) });
      assert.equal(claims.tryClaim("dead"), true);
      assert.equal(claims.tryClaim("live"), false);
      assert.equal(claims.tryClaim("reused"), true);
      assert.equal(claims.tryClaim("remote-fresh"), false);
      assert.equal(claims.tryClaim("remote-old"), true);
      assert.deepEqual(reclaimed, ["dead", "reused", "remote-old"]);
      // The reclaimed lock is now this process's, and a second claimer is refused.
      const other = new Claims(dir);
      assert.equal(other.tryClaim("dead"), false);
      assert.equal((claims.read("dead") as LockInfo).pid, Deno.pid);
      claims.releaseAll();
      assert.equal(claims.read("dead"), null);
      assert.equal(claims.read("live") !== null, true, "someone else's lock is left alone");
    } finally {
      sleeper.kill("SIGKILL");
      await sleeper.status;
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("duaf sweep: runs, table, resume after kill -9, two processes, report", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "duaf-cli-sweep-" });
  try {
    const ds = await tinyDataset(root);
    const grid = join(root, "grid.json");
    await Deno.writeTextFile(grid, JSON.stringify(GRID));
    const reference = join(root, "reference");

    await t.step("a 2x2 grid x 2 seeds: 8 runs, equal to plain train runs", async () => {
      const r = await runCli([...sweepArgs(ds, grid, reference), "--quiet"]);
      assert.equal(r.code, 0, r.stderr);
      const summary = JSON.parse(r.stdout);
      assert.deepEqual(
        { runs: summary.runs, done: summary.done, trained: summary.trained, left: summary.left },
        { runs: 8, done: 8, trained: 8, left: 0 },
      );
      const lines = await resultLines(reference);
      assert.equal(lines.length, 8);
      // The summary's best: the configuration with the highest mean valid ndcg@10.
      const means = new Map<string, number[]>();
      for (const l of lines) {
        means.set(l.configId, [...means.get(l.configId) ?? [], l.valid["ndcg@10"]]);
      }
      const [bestId, bestVs] = [...means].sort(([, a], [, b]) => (b[0] + b[1]) - (a[0] + a[1]))[0];
      assert.equal(summary.best.configId, bestId);
      assert.equal(summary.best.n, 2);
      assert.ok(Math.abs(summary.best.valid - (bestVs[0] + bestVs[1]) / 2) < 1e-12);
      const m = (await readSweepManifest(reference))!;
      assert.equal(m.format, "duaf-sweep");
      assert.deepEqual(m.seeds, [1, 2]);
      assert.deepEqual(new Set(lines.map((l) => l.run)), new Set(m.runs.map((r) => r.id)));
      for (const l of lines) {
        assert.equal(l.config.seed, l.seed);
        assert.ok(l.bestEpoch >= 1 && typeof l.valid["ndcg@10"] === "number");
        assert.ok(typeof l.test["ndcg@10"] === "number" && l.seconds > 0);
      }
      // One run against `duaf train` with the same config: same checkpoint bytes.
      const one = lines.find((l) => l.point.lr === 0.003 && l.point.hidden === 32 && l.seed === 2)!;
      const plain = join(root, "plain");
      await tinyTrain(ds, plain, [...TINY_SETS, "lr=0.003", "hidden=32", "seed=2"]);
      for (const f of ["model.safetensors", "state.safetensors"]) {
        assert.ok(await sameBytes(join(plain, f), join(reference, "runs", one.run, f)), f);
      }
      // `duaf eval` works on a sweep's run directory.
      const ev = await runCli([
        "eval",
        join(reference, "runs", one.run),
        "--backend",
        "wasm",
        "--quiet",
      ]);
      assert.equal(ev.code, 0, ev.stderr);
    });

    await t.step("sweep table: mean ± sd from results.jsonl, the best marked", async () => {
      const lines = await resultLines(reference);
      const csv = await runCli(["sweep", "table", reference, "--format", "csv"]);
      assert.equal(csv.code, 0, csv.stderr);
      const [head, ...rows] = csv.stdout.trim().split("\n").map((l) => l.split(","));
      assert.deepEqual(head.slice(0, 6), [
        "best",
        "lr",
        "hidden",
        "n",
        "valid_ndcg@10_mean",
        "valid_ndcg@10_sd",
      ]);
      assert.equal(rows.length, 4);
      // By hand for lr=0.001, hidden=32 from the two lines of results.jsonl.
      const vs = lines.filter((l) => l.point.lr === 0.001 && l.point.hidden === 32)
        .map((l) => l.valid["ndcg@10"]);
      assert.equal(vs.length, 2);
      const mean = (vs[0] + vs[1]) / 2;
      const sd = Math.abs(vs[0] - vs[1]) / Math.SQRT2;
      const row = rows.find((r) => r[1] === "0.001" && r[2] === "32")!;
      assert.equal(row[3], "2");
      assert.ok(Math.abs(Number(row[4]) - mean) < 1e-12, `${row[4]} vs ${mean}`);
      assert.ok(Math.abs(Number(row[5]) - sd) < 1e-12, `${row[5]} vs ${sd}`);
      // Exactly one best row, the highest valid mean, and only it has test metrics.
      const best = rows.filter((r) => r[0] === "1");
      assert.equal(best.length, 1);
      assert.equal(Number(best[0][4]), Math.max(...rows.map((r) => Number(r[4]))));
      const testCol = head.indexOf("test_ndcg@10_mean");
      assert.ok(testCol > 0);
      for (const r of rows) assert.equal(r[testCol] !== "", r[0] === "1");
      const bestTests = lines.filter((l) =>
        String(l.point.lr) === best[0][1] && String(l.point.hidden) === best[0][2]
      ).map((l) => l.test["ndcg@10"]);
      assert.ok(Math.abs(Number(best[0][testCol]) - (bestTests[0] + bestTests[1]) / 2) < 1e-12);

      const md = await runCli(["sweep", "table", reference]);
      assert.equal(md.code, 0, md.stderr);
      const mdLines = md.stdout.trim().split("\n");
      assert.equal(mdLines.length, 6);
      assert.match(mdLines[0], /^\| best \| lr \| hidden \| n \| valid ndcg@10 \| test ndcg@10/);
      assert.equal(mdLines.filter((l) => l.startsWith("| * |")).length, 1);
      assert.ok(md.stdout.includes(`${mean.toFixed(4)} ± ${sd.toFixed(4)}`));

      // --all-test: every row's test metrics (ablation tables), from its own runs.
      const all = await runCli(["sweep", "table", reference, "--format", "csv", "--all-test"]);
      assert.equal(all.code, 0, all.stderr);
      const allRows = all.stdout.trim().split("\n").slice(1).map((l) => l.split(","));
      for (const r of allRows) {
        const tests = lines.filter((l) =>
          String(l.point.lr) === r[1] && String(l.point.hidden) === r[2]
        ).map((l) => l.test["ndcg@10"]);
        assert.ok(Math.abs(Number(r[testCol]) - (tests[0] + tests[1]) / 2) < 1e-12);
      }
    });

    await t.step("sweep keep: the record without checkpoints, continued elsewhere", async () => {
      const kept = join(root, "record");
      const k = await runCli(["sweep", "keep", reference, kept]);
      assert.equal(k.code, 0, k.stderr);
      assert.deepEqual(JSON.parse(k.stdout), {
        sweep: reference,
        out: kept,
        runs: 8,
        manifests: 8,
      });
      const ids = (await readSweepManifest(reference))!.runs.map((r) => r.id).sort();
      assert.deepEqual(
        [...Deno.readDirSync(join(kept, "runs"))].map((e) => e.name).sort(),
        ids.map((id) => `${id}.manifest.json`).sort(),
      );
      assert.deepEqual([...Deno.readDirSync(kept)].map((e) => e.name).sort(), [
        "manifest.json",
        "results.jsonl",
        "runs",
      ]);
      assert.ok(await sameBytes(join(reference, "manifest.json"), join(kept, "manifest.json")));
      assert.ok(await sameBytes(join(reference, "results.jsonl"), join(kept, "results.jsonl")));
      for (const id of ids) {
        assert.ok(
          await sameBytes(
            join(reference, "runs", id, "manifest.json"),
            join(kept, "runs", `${id}.manifest.json`),
          ),
        );
      }
      // A record kept again (from itself, elsewhere) is the same record; a working sweep, the
      // sweep itself and other folders are refused.
      const again = join(root, "record-again");
      assert.equal((await runCli(["sweep", "keep", kept, again])).code, 0);
      assert.equal((await runCli(["sweep", "keep", kept, kept + "/"])).code, 2);
      for (const f of ["manifest.json", "results.jsonl", `runs/${ids[0]}.manifest.json`]) {
        assert.ok(await sameBytes(join(kept, f), join(again, f)), f);
      }
      const refusals: [string[], RegExp][] = [
        [["sweep", "keep", kept, reference], /a working sweep \(run directories\)/],
        [["sweep", "keep", reference, reference], /is the sweep itself/],
        [["sweep", "keep", reference, ds], /not a duaf sweep/],
      ];
      for (const [args, pattern] of refusals) {
        const u = await runCli(args);
        assert.equal(u.code, 2, `${args.join(" ")}: ${u.stderr}`);
        assert.match(u.stderr.trim(), pattern);
      }
      assert.ok(await Deno.stat(join(reference, "runs", ids[0], "model.safetensors")));
      // The record continued as a sweep: every run has its line, so nothing is trained.
      const c = await runCli(["sweep", ds, "--out", again, "--backend", "wasm", "--quiet"]);
      assert.equal(c.code, 0, c.stderr);
      const summary = JSON.parse(c.stdout);
      assert.deepEqual([summary.done, summary.trained, summary.resumed], [8, 0, 0]);
    });

    await t.step("kill -9 mid-sweep, then rerun: finished runs kept, bytes equal", async () => {
      const dir = join(root, "killed");
      const child = childSweep(sweepArgs(ds, grid, dir));
      const stderr = new Response(child.stderr).text();
      const stdout = new Response(child.stdout).text();
      // A random point: after a random number of finished runs (1 to 6), a random delay of up
      // to a third of a run (drawn from a clock-seeded Rng; the seed is in failure messages).
      const seed = Date.now() % 100000;
      const rng = new Rng(seed);
      const after = 1 + rng.int(6);
      const delay = rng.int(150);
      const results = join(dir, "results.jsonl");
      for (let i = 0; i < 6000; i++) {
        const n = await Deno.readTextFile(results).then((s) => s.split("\n").length - 1, () => 0);
        if (n >= after) break;
        await new Promise((r) => setTimeout(r, 5));
      }
      await new Promise((r) => setTimeout(r, delay));
      child.kill("SIGKILL");
      const status = await child.status;
      const log = await stderr;
      assert.equal(status.signal, "SIGKILL", `the sweep ended before the kill (seed ${seed})`);
      const before = (await readResults(dir)).map((r) => r.run);
      assert.ok(before.length >= 1 && before.length < 8, `${before.length} runs (seed ${seed})`);
      const kept = await mtimes(dir, before);
      // sweep status after the kill: nobody holds a run, the killed run's lock is stale.
      const st = await runCli(["sweep", "status", dir, "--format", "json"]);
      assert.equal(st.code, 0, st.stderr);
      const state = JSON.parse(st.stdout) as SweepStatus;
      assert.equal(state.counts.done, before.length, `seed ${seed}`);
      assert.equal(state.counts.running, 0, `seed ${seed}`);
      assert.equal(state.counts.stopped + state.counts.pending, 8 - before.length);
      assert.equal(state.workers, 0);

      const r = await runCli([...sweepArgs(ds, grid, dir)]);
      assert.equal(r.code, 0, r.stderr);
      const summary = JSON.parse(r.stdout);
      assert.equal(summary.trained + summary.resumed + summary.recorded, 8 - before.length);
      assert.deepEqual(await mtimes(dir, before), kept, "a finished run was redone");
      assert.equal((await resultLines(dir)).length, 8);
      await assertSameRuns(reference, dir);
      assert.deepEqual([...Deno.readDirSync(join(dir, "locks"))], [], "locks left behind");
      // Progress went to stderr: runs done and left, with an ETA.
      assert.match(log, /^sweep: 1\/8 done, 7 left, ETA \S+/m);
      assert.equal(await stdout, "", "stdout holds only the final summary");
    });

    await t.step(
      "interrupted mid-run (shouldStop), the rerun resumes from the checkpoint",
      async () => {
        const dir = join(root, "interrupted");
        const { backend } = await activateBackend("wasm");
        const opts = {
          dataset: ds,
          out: dir,
          gridFile: grid,
          grid: parseGrid(GRID, grid),
          base: resolveConfig(null, TINY_SETS),
          seeds: [1, 2],
          backendName: backend.name,
        };
        // The first run takes a few calls; stopping at call 12 lands inside the second run.
        let calls = 0;
        const first = await runSweep({ ...opts, shouldStop: () => ++calls > 12 });
        assert.equal(first.interrupted, true);
        assert.equal(first.done, 1);
        // sweep status: one run done, the interrupted one stopped with its checkpoint, and a
        // run whose lock a live process holds (a stand-in, `sleep`) counts as running.
        const ids = (await readSweepManifest(dir))!.runs.map((r) => r.id);
        const sleeper = new Deno.Command("sleep", { args: ["30"] }).spawn();
        try {
          const lock: LockInfo = {
            host: Deno.hostname(),
            pid: sleeper.pid,
            start: processStart(sleeper.pid) as number,
            token: "t",
            at: "2026-01-01T00:00:00.000Z",
          };
          await Deno.writeTextFile(join(dir, "locks", `${ids[7]}.lock`), JSON.stringify(lock));
          const st = await runCli(["sweep", "status", dir, "--format", "json"]);
          assert.equal(st.code, 0, st.stderr);
          const status = JSON.parse(st.stdout) as SweepStatus;
          assert.deepEqual(status.counts, { done: 1, running: 1, stopped: 1, pending: 5 });
          assert.deepEqual(status.runs.map((r) => r.state), [
            "done",
            "stopped",
            "pending",
            "pending",
            "pending",
            "pending",
            "pending",
            "running",
          ]);
          const [done, stopped, , , , , , running] = status.runs;
          const line = (await readResults(dir))[0];
          assert.equal(done.run, line.run);
          assert.equal(done.bestValid, line.valid["ndcg@10"]);
          assert.equal(done.seconds, line.seconds);
          assert.ok(stopped.seconds > 0 && stopped.holder === null, "released at the interruption");
          assert.equal(running.holder?.pid, sleeper.pid);
          assert.equal(status.workers, 1);
          // The ETA: six runs of the finished run's length, and what the stopped one lacks.
          const eta = 6 * line.seconds + Math.max(0, line.seconds - stopped.seconds);
          assert.ok(Math.abs(status.etaSeconds! - eta) < 1e-6, `${status.etaSeconds} vs ${eta}`);
          const md = await runCli(["sweep", "status", dir]);
          assert.equal(md.code, 0, md.stderr);
          assert.match(
            md.stdout,
            /: 1 of 8 runs done, 1 running \(1 process\), 1 stopped part-way, 5 not started; ETA /,
          );
          assert.equal(md.stdout.trim().split("\n").length, 2 + 2 + 8);
        } finally {
          sleeper.kill("SIGKILL");
          await sleeper.status;
          await Deno.remove(join(dir, "locks", `${ids[7]}.lock`));
        }
        const second = await runSweep(opts);
        assert.deepEqual(
          { resumed: second.resumed, trained: second.trained, done: second.done },
          { resumed: 1, trained: 6, done: 8 },
        );
        await assertSameRuns(reference, dir);
      },
    );

    await t.step(
      "--no-wait: returns when every run left is claimed by a live process",
      async () => {
        const dir = join(root, "no-wait");
        const { backend } = await activateBackend("wasm");
        const opts = {
          dataset: ds,
          out: dir,
          gridFile: grid,
          grid: parseGrid(GRID, grid),
          base: resolveConfig(null, TINY_SETS),
          seeds: [1, 2],
          backendName: backend.name,
        };
        // Write the sweep's manifest without training, then hold every run's lock from a live pid.
        assert.equal((await runSweep({ ...opts, shouldStop: () => true })).trained, 0);
        const ids = (await readSweepManifest(dir))!.runs.map((r) => r.id);
        const sleeper = new Deno.Command("sleep", { args: ["60"] }).spawn();
        try {
          const host = Deno.hostname();
          for (const id of ids) {
            Deno.writeTextFileSync(
              join(dir, "locks", `${id}.lock`),
              JSON.stringify({
                host,
                pid: sleeper.pid,
                start: processStart(sleeper.pid),
                token: id,
                at: "now",
              }),
            );
          }
          const summary = await runSweep({ ...opts, noWait: true, pollMs: 10 });
          assert.deepEqual(
            { trained: summary.trained, done: summary.done, left: summary.left },
            { trained: 0, done: 0, left: ids.length },
          );
        } finally {
          sleeper.kill();
          await sleeper.status;
        }
      },
    );

    for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
      await t.step(`${signal}: the current run stops with a checkpoint, exit ${code}`, async () => {
        const dir = join(root, signal);
        const child = childSweep(sweepArgs(ds, grid, dir));
        const stdout = new Response(child.stdout).text();
        const stderr = new Response(child.stderr).text();
        for (let i = 0; i < 3000; i++) {
          if (await Deno.stat(join(dir, "results.jsonl")).then(() => true, () => false)) break;
          await new Promise((r) => setTimeout(r, 10));
        }
        child.kill(signal);
        const status = await child.status;
        const log = await stderr;
        assert.equal(status.code, code, log);
        const summary = JSON.parse(await stdout);
        assert.equal(summary.interrupted, true);
        assert.equal(summary.stoppedBy, signal);
        assert.ok(summary.done >= 1 && summary.done < 8, JSON.stringify(summary));
        assert.deepEqual([...Deno.readDirSync(join(dir, "locks"))], [], "a lock was left behind");
        const r = await runCli([...sweepArgs(ds, grid, dir), "--quiet"]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(JSON.parse(r.stdout).done, 8);
        await assertSameRuns(reference, dir);
      });
    }

    await t.step(
      "--time-limit: no run starts past it, exit 75; the same command continues",
      async () => {
        // 0 s is past at the first check, before any run is claimed: deterministic.
        const dir = join(root, "time-limit");
        const r = await runCli([...sweepArgs(ds, grid, dir), "--quiet", "--time-limit", "0"]);
        assert.equal(r.code, 75, r.stderr);
        const summary = JSON.parse(r.stdout);
        assert.equal(summary.stoppedBy, "time-limit");
        assert.equal(summary.done, 0);
        assert.deepEqual([...Deno.readDirSync(join(dir, "locks"))], [], "a lock was left behind");
        const again = await runCli([...sweepArgs(ds, grid, dir), "--quiet", "--time-limit", "1h"]);
        assert.equal(again.code, 0, again.stderr);
        assert.equal(JSON.parse(again.stdout).done, 8);
        await assertSameRuns(reference, dir);
      },
    );

    await t.step("two processes on one sweep: each run done exactly once", async () => {
      const dir = join(root, "shared");
      const a = childSweep(sweepArgs(ds, grid, dir));
      const b = childSweep(sweepArgs(ds, grid, dir));
      const outs = await Promise.all([a, b].map(async (c) => {
        const [stdout, stderr, status] = await Promise.all([
          new Response(c.stdout).text(),
          new Response(c.stderr).text(),
          c.status,
        ]);
        assert.equal(status.code, 0, stderr);
        return JSON.parse(stdout);
      }));
      assert.equal(outs[0].trained + outs[1].trained, 8, JSON.stringify(outs));
      assert.equal(outs[0].resumed + outs[1].resumed + outs[0].recorded + outs[1].recorded, 0);
      for (const o of outs) assert.equal(o.done, 8);
      assert.equal((await resultLines(dir)).length, 8);
      await assertSameRuns(reference, dir);
    });

    await t.step("duaf report on a sweep: the table and one chart per swept key", async () => {
      const out = join(root, "sweep.html");
      const r = await runCli(["report", reference, "--out", out, "--quiet"]);
      assert.equal(r.code, 0, r.stderr);
      const html = await Deno.readTextFile(out);
      assert.deepEqual(htmlProblems(html), []);
      assert.equal((html.match(/<svg/g) ?? []).length, 2);
      assert.match(html, /valid ndcg@10 by lr/);
      assert.match(html, /valid ndcg@10 by hidden/);
      assert.equal((html.match(/<tr><th>best<\/th>/g) ?? []).length, 1);
      // Each configuration's mean ± sd appears in the table.
      const lines = await readResults(reference);
      const table = aggregate(lines, ["lr", "hidden"], "ndcg@10");
      for (const row of table.rows) assert.ok(html.includes(`${row.valid.n}</td>`));
      assert.ok(html.includes("Best configuration: test metrics"));
    });

    await t.step("a changed grid is refused; added values are run; --out safety", async () => {
      const other = join(root, "other.json");
      await Deno.writeTextFile(other, JSON.stringify({ lr: [0.001, 0.01], hidden: [16, 32] }));
      const manifestBefore = await Deno.readTextFile(join(reference, "manifest.json"));
      const refused = await runCli(sweepArgs(ds, other, reference));
      assert.equal(await Deno.readTextFile(join(reference, "manifest.json")), manifestBefore);
      assert.equal(refused.code, 2);
      assert.equal(refused.stderr.split("\n").length, 1, refused.stderr);
      assert.match(refused.stderr, /4 of the sweep's 8 runs are not in this grid.*--force/);

      const bigger = join(root, "bigger.json");
      await Deno.writeTextFile(
        bigger,
        JSON.stringify({ lr: [0.001, 0.003], hidden: [16, 32, 24] }),
      );
      const before = await mtimes(reference, (await readResults(reference)).map((r) => r.run));
      const grown = await runCli([...sweepArgs(ds, bigger, reference), "--quiet"]);
      assert.equal(grown.code, 0, grown.stderr);
      assert.deepEqual(JSON.parse(grown.stdout).trained, 4);
      assert.equal((await resultLines(reference)).length, 12);
      assert.deepEqual(
        await mtimes(reference, [...before.keys()].map((k) => k.split("/")[0])),
        before,
      );

      // The same data built elsewhere (other raw paths, so another manifest) continues the
      // sweep, and a finished run evaluates against it; other data is refused.
      const moved = join(root, "moved");
      await Deno.mkdir(moved);
      for await (const e of Deno.readDir(ds)) {
        await Deno.copyFile(join(ds, e.name), join(moved, e.name));
      }
      const m = JSON.parse(await Deno.readTextFile(join(ds, "manifest.json")));
      for (const s of m.sources) s.path = `/elsewhere/${s.path.split("/").pop()}`;
      await Deno.writeTextFile(join(moved, "manifest.json"), JSON.stringify(m, null, 2));
      const again = await runCli([...sweepArgs(moved, bigger, reference), "--quiet"]);
      assert.equal(again.code, 0, again.stderr);
      assert.equal(JSON.parse(again.stdout).trained, 0);
      const someRun = join(reference, "runs", (await readResults(reference))[0].run);
      const evaluated = await runCli(["eval", someRun, "--dataset", moved, "--quiet"]);
      assert.equal(evaluated.code, 0, evaluated.stderr);
      // A kept sweep (its manifest and results only, as docs/results keeps them) continues
      // from the dataset and --out alone, with the plan its manifest holds; the run it lacks
      // trains as it did the first time.
      const kept = join(root, "kept");
      await Deno.mkdir(kept);
      await Deno.copyFile(join(reference, "manifest.json"), join(kept, "manifest.json"));
      const all = (await Deno.readTextFile(join(reference, "results.jsonl"))).trimEnd().split("\n");
      await Deno.writeTextFile(join(kept, "results.jsonl"), all.slice(0, -1).join("\n") + "\n");
      const continued = await runCli(["sweep", moved, "--out", kept, "--backend", "wasm"]);
      assert.equal(continued.code, 0, continued.stderr);
      assert.equal(JSON.parse(continued.stdout).trained, 1);
      const last = JSON.parse(all[all.length - 1]) as ResultLine;
      const redone = (await resultLines(kept)).find((r) => r.run === last.run)!;
      assert.deepEqual([redone.valid, redone.test], [last.valid, last.test]);
      assert.deepEqual(
        JSON.parse(await Deno.readTextFile(join(kept, "manifest.json"))).grid,
        JSON.parse(await Deno.readTextFile(join(reference, "manifest.json"))).grid,
      );
      const mixed = await runCli(["sweep", moved, "--out", kept, "--seeds", "3"]);
      assert.equal(mixed.code, 2);
      assert.match(mixed.stderr, /--seeds: continuing .*kept uses the plan in its manifest/);

      const otherData = await tinyDataset(root, ["--kcore", "3"], "other-data");
      const refusedData = await runCli(sweepArgs(otherData, bigger, reference));
      assert.equal(refusedData.code, 2);
      assert.match(refusedData.stderr, /sweep was made on another dataset.*--force/);
      const refusedEval = await runCli(["eval", someRun, "--dataset", otherData, "--quiet"]);
      assert.equal(refusedEval.code, 2);
      assert.match(refusedEval.stderr, /differs from the one the run was trained on/);

      // A bad grid: exit 2, one line naming the file and key, nothing written.
      const bad = join(root, "bad.json");
      await Deno.writeTextFile(bad, JSON.stringify({ lr: [0.001], hiddn: [8] }));
      const fresh = join(root, "never");
      const r = await runCli(sweepArgs(ds, bad, fresh));
      assert.equal(r.code, 2);
      assert.equal(
        r.stderr,
        `duaf sweep: ${bad}: hiddn: unknown config key 'hiddn' (did you mean 'hidden'?)`,
      );
      await assert.rejects(Deno.stat(fresh));

      // Usage errors.
      for (
        const [args, pattern] of [
          [["sweep", ds, "--out", fresh], /--grid FILE is required/],
          [["sweep", ds, "--grid", grid], /--out SWEEP is required/],
          [["sweep", "--grid", grid, "--out", fresh], /DATASET is required/],
          [[...sweepArgs(ds, grid, fresh), "--seeds", "1,x"], /--seeds: expected an integer/],
          [[...sweepArgs(ds, grid, fresh), "--seeds", "1,1"], /--seeds: a seed is repeated/],
          [[...sweepArgs(join(root, "nods"), grid, fresh)], /nods: not a duaf dataset/],
          [["sweep", "table", ds], /not a duaf sweep/],
          [["sweep", "table", reference, "--format", "xml"], /--format: expected one of md, csv/],
          [["sweep", "table", reference, "--metric", "auc"], /--metric: expected ndcg@K/],
        ] as [string[], RegExp][]
      ) {
        const u = await runCli(args);
        assert.equal(u.code, 2, `${args.join(" ")}: ${u.stderr}`);
        assert.match(u.stderr, pattern);
        assert.equal(u.stderr.split("\n").length, 1);
        assert.equal(u.stdout, "");
      }
      await assert.rejects(Deno.stat(fresh));

      // --out that holds something else: refused, or replaced with --force.
      const busy = join(root, "busy");
      await Deno.mkdir(busy);
      await Deno.writeTextFile(join(busy, "notes.txt"), "mine");
      const one = join(root, "one.json");
      await Deno.writeTextFile(one, JSON.stringify({ lr: [0.001] }));
      const no = await runCli([...sweepArgs(ds, one, busy), "--seeds", "1"]);
      assert.equal(no.code, 2);
      assert.match(
        no.stderr,
        /^duaf sweep: .*busy: exists and is not a duaf sweep .*; pass --force to replace it$/,
      );
      assert.equal(await Deno.readTextFile(join(busy, "notes.txt")), "mine");
      const yes = await runCli([...sweepArgs(ds, one, busy), "--seeds", "1", "--force", "--quiet"]);
      assert.equal(yes.code, 0, yes.stderr);
      await assert.rejects(Deno.stat(join(busy, "notes.txt")));
      assert.equal((await resultLines(busy)).length, 1);
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("duaf sweep --init-from: a run, or a sweep's run of the same seed; refusals", async () => {
  const root = await Deno.makeTempDir({ prefix: "duaf-cli-sweep-init-" });
  try {
    const ds = await tinyDataset(root);
    const one = join(root, "one.json");
    await Deno.writeTextFile(one, JSON.stringify({ lr: [0.001] }));
    const pre = join(root, "pre");
    const p = await runCli([...sweepArgs(ds, one, pre), "--quiet"]);
    assert.equal(p.code, 0, p.stderr);
    const preRuns = new Map((await resultLines(pre)).map((l) => [l.seed, l.run]));

    // Each fine-tuning seed starts from the pre-training run of its seed, as `train --init-from`.
    const ftGrid = join(root, "ft.json");
    await Deno.writeTextFile(ftGrid, JSON.stringify({ lr: [0.003] }));
    const ft = join(root, "ft");
    const f = await runCli([...sweepArgs(ds, ftGrid, ft), "--init-from", pre, "--quiet"]);
    assert.equal(f.code, 0, f.stderr);
    const lines = await resultLines(ft);
    assert.equal(lines.length, 2);
    for (const l of lines) {
      const source = join(pre, "runs", preRuns.get(l.seed)!);
      assert.equal(l.initFrom, source);
      const m = JSON.parse(await Deno.readTextFile(join(ft, "runs", l.run, "manifest.json")));
      assert.equal(m.initFrom.run, source);
    }
    assert.equal((await readSweepManifest(ft))!.initFrom?.kind, "sweep");
    const seed2 = lines.find((l) => l.seed === 2)!;
    const plain = join(root, "plain");
    const t = await runCli([
      ...tinyTrainArgs(ds, plain, [...TINY_SETS, "lr=0.003", "seed=2"]),
      "--init-from",
      join(pre, "runs", preRuns.get(2)!),
    ]);
    assert.equal(t.code, 0, t.stderr);
    assert.ok(
      await sameBytes(
        join(plain, "model.safetensors"),
        join(ft, "runs", seed2.run, "model.safetensors"),
      ),
      "a sweep run with --init-from differs from train --init-from",
    );
    // A run directory: every seed starts from it.
    // (The grid given inline: the same runs as from the file.)
    const fromRun = join(root, "from-run");
    const inline = JSON.stringify({ lr: [0.003] });
    const r = await runCli([...sweepArgs(ds, inline, fromRun), "--init-from", plain, "--quiet"]);
    assert.equal(r.code, 0, r.stderr);
    const fromRunLines = await resultLines(fromRun);
    assert.deepEqual(fromRunLines.map((l) => l.run).sort(), lines.map((l) => l.run).sort());
    for (const l of fromRunLines) assert.equal(l.initFrom, plain);
    assert.equal((await readSweepManifest(fromRun))!.grid.file, "--grid");
    const bad = await runCli([...sweepArgs(ds, "{lr: 1}", join(root, "x0"))]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^duaf sweep: --grid: not valid JSON/);

    // Refusals: one line, exit 2, nothing written.
    const two = join(root, "two.json");
    await Deno.writeTextFile(two, JSON.stringify({ lr: [0.001, 0.003] }));
    const pre2 = join(root, "pre2");
    const p2 = await runCli([...sweepArgs(ds, two, pre2), "--seeds", "1", "--quiet"]);
    assert.equal(p2.code, 0, p2.stderr);
    const cases: [string[], RegExp][] = [
      [[...sweepArgs(ds, ftGrid, ft)], /sweep was made with --init-from .*pre; use another --out/],
      [
        [...sweepArgs(ds, ftGrid, join(root, "x1")), "--init-from", pre, "--seeds", "1,3"],
        /--init-from .*pre: no finished run of seed 3 in that sweep$/,
      ],
      [
        [...sweepArgs(ds, ftGrid, join(root, "x2")), "--init-from", pre2],
        /--init-from .*pre2: the sweep has 2 configurations/,
      ],
      [
        [...sweepArgs(ds, ftGrid, join(root, "x3")), "--init-from", root],
        /--init-from .*: neither a sweep nor a run with a best checkpoint/,
      ],
    ];
    for (const [args, pattern] of cases) {
      const u = await runCli(args);
      assert.equal(u.code, 2, `${args.join(" ")}: ${u.stderr}`);
      assert.match(u.stderr.trim(), pattern);
      assert.equal(u.stderr.trim().split("\n").length, 1, u.stderr);
    }
    for (const x of ["x1", "x2", "x3"]) await assert.rejects(Deno.stat(join(root, x)));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("duaf sweep --top: screen with the first seed, then the best K under the others", async () => {
  const root = await Deno.makeTempDir({ prefix: "duaf-cli-sweep-top-" });
  try {
    const ds = await tinyDataset(root);
    const grid = join(root, "grid.json");
    await Deno.writeTextFile(grid, JSON.stringify(GRID));
    const out = join(root, "top");
    const r = await runCli([...sweepArgs(ds, grid, out), "--top", "1", "--quiet"]);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout);
    assert.deepEqual({ runs: summary.runs, done: summary.done, trained: summary.trained }, {
      runs: 5,
      done: 5,
      trained: 5,
    });
    const lines = await resultLines(out);
    const screen = lines.filter((l) => l.seed === 1);
    assert.equal(screen.length, 4);
    const ranked = [...screen].sort((a, b) => b.valid["ndcg@10"] - a.valid["ndcg@10"]);
    const promoted = lines.filter((l) => l.seed === 2);
    assert.deepEqual(promoted.map((l) => l.configId), [ranked[0].configId]);
    const m = (await readSweepManifest(out))!;
    assert.deepEqual(m.top, { k: 1, screenSeeds: [1] });
    assert.equal(m.runs.length, 5);
    // The table's best is the configuration with both seeds, whatever one seed of another says.
    const t = await runCli(["sweep", "table", out, "--format", "csv"]);
    assert.equal(t.code, 0, t.stderr);
    const best = t.stdout.trim().split("\n").slice(1).filter((row) => row.startsWith("1,"));
    assert.equal(best.length, 1);
    assert.match(best[0], /^1,[^,]+,[^,]+,2,/);

    // sweep status mid-screening (the sweep as it was with 3 of 4 screening runs done): the
    // promoted run is counted as still to come.
    const mid = join(root, "mid");
    await Deno.mkdir(join(mid, "locks"), { recursive: true });
    await Deno.writeTextFile(
      join(mid, "manifest.json"),
      JSON.stringify({ ...m, runs: m.runs.filter((x) => x.seed === 1) }),
    );
    const kept = lines.filter((l) => l.seed === 1).slice(0, 3);
    await Deno.writeTextFile(
      join(mid, "results.jsonl"),
      kept.map((l) => JSON.stringify(l) + "\n").join(""),
    );
    const st = await runCli(["sweep", "status", mid, "--format", "json"]);
    assert.equal(st.code, 0, st.stderr);
    const status = JSON.parse(st.stdout) as SweepStatus;
    assert.deepEqual(status.counts, { done: 3, running: 0, stopped: 0, pending: 1 });
    assert.equal(status.toPromote, 1);
    const mean = kept.reduce((a, l) => a + l.seconds, 0) / 3;
    assert.ok(Math.abs(status.etaSeconds! - 2 * mean) < 1e-6);
    const md = await runCli(["sweep", "status", mid]);
    assert.match(
      md.stdout,
      /: 3 of 5 runs done, .*, 1 more once screening completes \(1 screening run to go\); \S+ \S+ of one process's time left, no process working on it/,
    );
    const full = JSON.parse((await runCli(["sweep", "status", out, "--format", "json"])).stdout);
    assert.deepEqual([full.counts.done, full.toPromote, full.etaSeconds], [5, 0, 0]);

    // A rerun trains nothing; a larger K promotes the next configuration.
    const again = await runCli([...sweepArgs(ds, grid, out), "--top", "1", "--quiet"]);
    assert.equal(JSON.parse(again.stdout).trained, 0);
    const k2 = await runCli([...sweepArgs(ds, grid, out), "--top", "2", "--quiet"]);
    assert.equal(k2.code, 0, k2.stderr);
    assert.equal(JSON.parse(k2.stdout).trained, 1);
    const seed2 = (await resultLines(out)).filter((l) => l.seed === 2).map((l) => l.configId);
    assert.deepEqual(seed2.sort(), [ranked[0].configId, ranked[1].configId].sort());

    // Refusals: the screening changed, or --screen-seeds leaving no seed to promote to.
    const cases: [string[], RegExp][] = [
      [sweepArgs(ds, grid, out), /sweep was made with --top, screening seeds 1; use another --out/],
      [
        [...sweepArgs(ds, grid, join(root, "x")), "--top", "1", "--screen-seeds", "2"],
        /--screen-seeds: expected 1 to 1/,
      ],
      [[...sweepArgs(ds, grid, join(root, "x")), "--screen-seeds", "1"], /applies with --top K/],
    ];
    for (const [args, pattern] of cases) {
      const u = await runCli(args);
      assert.equal(u.code, 2, `${args.join(" ")}: ${u.stderr}`);
      assert.match(u.stderr.trim(), pattern);
    }
    await assert.rejects(Deno.stat(join(root, "x")));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
