/** `duaf sweep`: a grid (or a random draw from it) of train configs x seeds; `sweep table`. */
import { backendSummary } from "../../core/backend.ts";
import { resolveConfig } from "../../core/config.ts";
import { DataError, UsageError } from "../../core/errors.ts";
import { parseGrid } from "../../core/sweep/grid.ts";
import { keepSweep } from "../../core/sweep/keep.ts";
import { statusMarkdown, sweepStatus } from "../../core/sweep/status.ts";
import { sweepTable } from "../../core/sweep/table.ts";
import { tableCsv, tableMarkdown } from "../../core/sweep/results.ts";
import { prepareSweep, readSweepManifest, runSweep } from "../../core/sweep/sweep.ts";
import { activateBackend } from "../../core/train/run.ts";
import type { Command } from "../command.ts";
import {
  checkpointSecondsFlag,
  choiceFlag,
  DEFAULT_CHECKPOINT_SECONDS,
  durationFlag,
  emitJson,
  intFlag,
  listFlag,
  numberFlag,
  onePositional,
  parseFlags,
} from "../flags.ts";
import { EXIT_CODE, stopOnSignals } from "../interrupt.ts";
import { StderrProgress } from "../progress.ts";

const usage = `usage: duaf sweep DATASET --grid FILE --out SWEEP [options]
       duaf sweep DATASET --out SWEEP [--backend NAME ...]   (continue SWEEP as it was made)
       duaf sweep table SWEEP [--format md|csv] [--metric NAME] [--all-test]
       duaf sweep status SWEEP [--format md|json] [--stale-minutes M]
       duaf sweep keep SWEEP DIR [--force]

Trains every configuration of a grid under every seed; each run is an ordinary run directory
under SWEEP/runs/ and one line of SWEEP/results.jsonl. Rerun the same command to continue a
killed or interrupted sweep (finished runs are never redone; a run cut off mid-training resumes
from its checkpoint); start it in several processes at once (or on machines sharing SWEEP) to
split the runs between them. A rerun may add configurations or seeds; any other change of the
grid or dataset is refused (--force starts over). Without --grid, an existing SWEEP continues
with the plan its manifest holds (grid, seeds, base config, --random, --top, --init-from): a kept
sweep copied from elsewhere needs only the dataset. See docs/sweep.md.

options:
  --grid FILE|JSON     JSON object: config key (dotted for duafmat.*) -> list of values, in a
                       file or inline ('{"model": ["sasrec", "fdsa"]}')
  --seeds LIST         comma-separated seeds, each configuration runs under each (default: the
                       config's seed)
  --random N           N configurations drawn from the grid instead of all of them
  --top K              screen: every configuration runs under the first --screen-seeds seeds,
                       then only the K best by mean valid metric run under the other seeds
  --screen-seeds N     how many of --seeds screen with --top (default 1)
  --sample-seed S      seed of the --random draw (default 0); a larger N with the same seed
                       draws a superset
  --config FILE        base config (JSON object of config keys); the grid's values override it
  --set KEY=VALUE      base config override, repeatable (as in duaf train)
  --out SWEEP          the sweep directory
  --init-from PATH     start every run from pre-trained parameters (as train --init-from): a run
                       directory, or a sweep of one configuration whose run of the same seed
                       starts each run (pre-training seed s -> fine-tuning seed s)
  --force              replace an --out that is not a sweep, or a sweep of another grid/dataset
  --stale-minutes M    a lock from another host untouched this long is stale (default 10)
  --checkpoint-every S each run also checkpoints every S seconds within an epoch (default
                       ${DEFAULT_CHECKPOINT_SECONDS}; 0: at epoch ends only), so a killed sweep
                       resumes its run in progress close to where it stopped
  --no-wait            return when every run left is claimed by another live process (default:
                       wait, and take over a run whose process dies), so a queue of sweeps moves on
  --time-limit D       stop after D (seconds, or 90m, 1h30m, ...): the current run saves a
                       checkpoint, no new run starts, exit 75 (for job time limits and queues)
  --backend NAME       auto | cuda | native | wasm | js   (or DUAF_BACKEND)
  --quiet              no progress output

sweep table:
  --format md|csv      Markdown (default) or CSV on stdout
  --metric NAME        valid metric to rank configurations by (default the config's metric)
  --all-test           test metrics on every row, not only the best one (for ablation tables,
                       whose rows are fixed in advance rather than chosen by the valid metric)

sweep status (reads SWEEP only; claims and writes nothing, so it is safe beside running sweeps):
  each run's state (done, running with the process holding it, stopped part-way with a
  checkpoint to resume from, not started), its epochs, best epoch and best valid metric so far,
  and an ETA from the finished runs' mean time and the processes working now
  --format md|json     a summary line and a Markdown table (default), or one JSON object
  --stale-minutes M    as for sweep: when another host's lock counts as abandoned (default 10)

sweep keep: writes DIR, the sweep's record without checkpoints (manifest.json, results.jsonl and
  runs/<id>.manifest.json of each finished run), to commit or carry elsewhere; copied back into a
  work folder, \`duaf sweep DATASET --out FOLDER\` continues it. DIR may be absent, empty or an
  earlier record; --force replaces anything else

stdout: one JSON summary (sweep, sweep keep), the table (sweep table) or the status (sweep
status). Progress (runs done, left, ETA)
goes to stderr. SIGINT or SIGTERM stops the current run with a checkpoint and exits 130 or 143,
--time-limit with 75 (the summary's "stoppedBy" says which); the same command continues.`;

async function readJsonFile(path: string, flag: string): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch {
    throw new UsageError(`${flag} ${path}: cannot read file`);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new DataError(path, null, null, "not valid JSON");
  }
}

/** --grid: a JSON file, or the JSON object itself when the value starts with "{". */
async function readGrid(value: string): Promise<unknown> {
  if (!value.trimStart().startsWith("{")) return await readJsonFile(value, "--grid");
  try {
    return JSON.parse(value);
  } catch (e) {
    throw new UsageError(`--grid: not valid JSON (${(e as Error).message})`);
  }
}

async function tableCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags("sweep", args, {
    format: { type: "string" },
    metric: { type: "string" },
    "all-test": { type: "boolean" },
  }, true);
  const dir = onePositional("sweep", "SWEEP", positionals);
  const format = choiceFlag("format", values.format, ["md", "csv"] as const) ?? "md";
  const table = await sweepTable(dir, values.metric);
  const opts = { allTest: values["all-test"] };
  const text = format === "csv" ? tableCsv(table, opts) : tableMarkdown(table, opts);
  console.log(text.trimEnd());
  return 0;
}

async function statusCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags("sweep", args, {
    format: { type: "string" },
    "stale-minutes": { type: "string" },
  }, true);
  const dir = onePositional("sweep", "SWEEP", positionals);
  const format = choiceFlag("format", values.format, ["md", "json"] as const) ?? "md";
  const status = await sweepStatus(dir, staleMs(values["stale-minutes"]));
  if (format === "json") emitJson(status);
  else console.log(statusMarkdown(status));
  return 0;
}

async function keepCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags("sweep", args, { force: { type: "boolean" } }, true);
  if (positionals.length !== 2) {
    throw new UsageError("sweep keep: expected SWEEP DIR (see duaf help sweep)");
  }
  emitJson(await keepSweep(positionals[0], positionals[1], values.force ?? false));
  return 0;
}

/** --stale-minutes M (default 10) in milliseconds. */
function staleMs(value: string | undefined): number {
  const minutes = numberFlag("stale-minutes", value) ?? 10;
  if (!(minutes > 0)) throw new UsageError("--stale-minutes: expected a number > 0");
  return minutes * 60_000;
}

/** The flags that make a sweep's plan; continuing a sweep takes them from its manifest. */
const PLAN_FLAGS = [
  "grid",
  "seeds",
  "random",
  "top",
  "screen-seeds",
  "sample-seed",
  "config",
  "set",
  "init-from",
] as const;

type PlanValues = { [K in (typeof PLAN_FLAGS)[number]]?: K extends "set" ? string[] : string };

/**
 * Without --grid, fills the plan flags from the sweep at `out` as the command that made it gave
 * them, and returns its base config (every key, so defaults changed since then do not apply)
 * and the grid's name.
 * Returns null when `out` is not a sweep, so the missing --grid is reported.
 */
async function continueFrom(
  out: string,
  values: PlanValues,
): Promise<{ base: Record<string, unknown>; gridFile: string } | null> {
  const m = await readSweepManifest(out);
  if (!m) return null;
  const given = PLAN_FLAGS.filter((f) => values[f] !== undefined);
  if (given.length) {
    const flag = `--${given[0]}`;
    throw new UsageError(
      `${flag}: continuing ${out} uses the plan in its manifest; give --grid too`,
    );
  }
  values.grid = JSON.stringify(m.grid.keys);
  values.seeds = m.seeds.join(",");
  if (m.random) {
    values.random = String(m.random.n);
    values["sample-seed"] = String(m.random.seed);
  }
  if (m.top) {
    values.top = String(m.top.k);
    values["screen-seeds"] = String(m.top.screenSeeds.length);
  }
  if (m.initFrom) values["init-from"] = m.initFrom.path;
  return { base: m.base as Record<string, unknown>, gridFile: m.grid.file };
}

export const sweepCommand: Command = {
  name: "sweep",
  summary: "grid or random search over train configs x seeds; resumable, shareable",
  usage,
  async run(args) {
    if (args[0] === "table") return await tableCommand(args.slice(1));
    if (args[0] === "status") return await statusCommand(args.slice(1));
    if (args[0] === "keep") return await keepCommand(args.slice(1));
    const { values, positionals } = parseFlags("sweep", args, {
      grid: { type: "string" },
      seeds: { type: "string" },
      random: { type: "string" },
      top: { type: "string" },
      "screen-seeds": { type: "string" },
      "sample-seed": { type: "string" },
      config: { type: "string" },
      set: { type: "string", multiple: true },
      out: { type: "string" },
      "init-from": { type: "string" },
      force: { type: "boolean" },
      "stale-minutes": { type: "string" },
      "checkpoint-every": { type: "string" },
      "time-limit": { type: "string" },
      "no-wait": { type: "boolean" },
      backend: { type: "string" },
      quiet: { type: "boolean" },
    }, true);
    const dataset = onePositional("sweep", "DATASET", positionals);
    const timeLimitSeconds = durationFlag("time-limit", values["time-limit"]);
    if (!values.out) throw new UsageError("--out SWEEP is required (see duaf help sweep)");
    const continued = values.grid ? null : await continueFrom(values.out, values);
    if (!values.grid) throw new UsageError("--grid FILE is required (see duaf help sweep)");
    const fileCfg = continued?.base ??
      (values.config
        ? await readJsonFile(values.config, "--config") as Record<string, unknown>
        : null);
    if (fileCfg !== null && (typeof fileCfg !== "object" || Array.isArray(fileCfg))) {
      throw new DataError(values.config!, null, null, "expected a JSON object");
    }
    const base = resolveConfig(
      fileCfg,
      values.set ?? [],
      continued ? `${values.out}/manifest.json: base` : values.config ?? "config",
    );
    // Errors and the manifest name the grid by its file, or "--grid" when it is inline.
    const gridName = continued?.gridFile ??
      (values.grid.trimStart().startsWith("{") ? "--grid" : values.grid);
    const grid = parseGrid(await readGrid(values.grid), gridName);
    const seeds = (listFlag(values.seeds) ?? [String(base.seed)]).map((s) =>
      intFlag("seeds", s, 0)!
    );
    if (!seeds.length) throw new UsageError("--seeds: expected at least one seed");
    if (new Set(seeds).size !== seeds.length) throw new UsageError("--seeds: a seed is repeated");
    const n = intFlag("random", values.random, 1);
    const sampleSeed = intFlag("sample-seed", values["sample-seed"], 0) ?? 0;
    const top = intFlag("top", values.top, 1);
    const screenSeeds = intFlag("screen-seeds", values["screen-seeds"], 1);
    if (screenSeeds !== undefined && top === undefined) {
      throw new UsageError("--screen-seeds applies with --top K");
    }
    const progress = new StderrProgress({ quiet: values.quiet });
    const opts = {
      dataset,
      out: values.out,
      gridFile: gridName,
      grid,
      base,
      seeds,
      random: n !== undefined ? { n, seed: sampleSeed } : null,
      force: values.force ?? false,
      staleMs: staleMs(values["stale-minutes"]),
      checkpointSeconds: checkpointSecondsFlag(values["checkpoint-every"]),
      noWait: values["no-wait"] ?? false,
      initFrom: values["init-from"] ?? null,
      top: top !== undefined ? { k: top, screenSeeds: screenSeeds ?? 1 } : null,
      progress,
    };
    // Every configuration, --out and an existing sweep's grid are checked before a backend
    // starts or anything is written.
    const prepared = await prepareSweep({ ...opts, backendName: "" });
    const { backend, skipped } = await activateBackend(values.backend);
    progress.log(
      `backend: ${backendSummary(backend)}${
        skipped.length ? ` (skipped ${skipped.join("; ")})` : ""
      }`,
    );
    const interrupt = stopOnSignals(progress, { timeLimitSeconds });
    try {
      const summary = await runSweep({
        ...opts,
        backendName: backend.name,
        shouldStop: interrupt.shouldStop,
      }, prepared);
      const by = interrupt.reason();
      emitJson(summary.interrupted ? { ...summary, stoppedBy: by } : summary);
      return summary.interrupted ? EXIT_CODE[by ?? "SIGINT"] : 0;
    } finally {
      interrupt.dispose();
    }
  },
};
