/**
 * A sweep's record without its checkpoints, to commit beside a paper's tables or carry to another
 * machine: manifest.json, results.jsonl and each finished run's manifest.json (config, dataset
 * identity, per-epoch history) as runs/<id>.manifest.json. Copied back into a work folder, the
 * record is a sweep that `duaf sweep DATASET --out DIR` continues, training only the runs without
 * a line (docs/sweep.md).
 */
import { join, resolve } from "node:path";
import { UsageError } from "../errors.ts";
import { exists, writeDirAtomic } from "../io/atomic.ts";
import { checkOutputDir } from "../io/output_guard.ts";
import { readResults, RESULTS_FILE } from "./results.ts";
import { SWEEP_ARTIFACT, sweepManifestPath } from "./sweep.ts";
import { openSweep } from "./table.ts";

export interface KeptSweep {
  sweep: string;
  out: string;
  /** Finished runs: lines of results.jsonl. */
  runs: number;
  /** Of those, the runs whose manifest was kept (a run directory may have been deleted). */
  manifests: number;
}

/**
 * Whether `out` may take the record: absent, empty, or a sweep record (--force aside). A working
 * sweep there (locks, or run directories with checkpoints) is refused, since keeping would
 * replace its checkpoints with manifests.
 */
async function checkKeepOut(out: string, force: boolean): Promise<void> {
  const state = await checkOutputDir(out, SWEEP_ARTIFACT, { force });
  if (state !== "artifact" || force) return;
  const dirs: string[] = [];
  try {
    for await (const e of Deno.readDir(join(out, "runs"))) if (e.isDirectory) dirs.push(e.name);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  if (dirs.length || await exists(join(out, "locks"))) {
    throw new UsageError(
      `${out}: a working sweep (${dirs.length ? "run directories" : "locks"}), not a kept ` +
        `record; keep writes records only; pass --force to replace it`,
    );
  }
}

export async function keepSweep(sweep: string, out: string, force = false): Promise<KeptSweep> {
  await openSweep(sweep);
  if (resolve(sweep) === resolve(out)) {
    throw new UsageError(`${out}: is the sweep itself; keep it somewhere else`);
  }
  await checkKeepOut(out, force);
  const results = await readResults(sweep);
  let manifests = 0;
  await writeDirAtomic(out, async (tmp) => {
    await Deno.copyFile(sweepManifestPath(sweep), join(tmp, "manifest.json"));
    // Complete lines only (readResults drops a torn last line and repeated runs).
    await Deno.writeTextFile(
      join(tmp, RESULTS_FILE),
      results.map((r) => JSON.stringify(r) + "\n").join(""),
    );
    await Deno.mkdir(join(tmp, "runs"));
    for (const r of results) {
      // A working sweep's run directory, or the file of a record kept before.
      for (const from of [`${r.run}/manifest.json`, `${r.run}.manifest.json`]) {
        try {
          await Deno.copyFile(
            join(sweep, "runs", from),
            join(tmp, "runs", `${r.run}.manifest.json`),
          );
          manifests++;
          break;
        } catch (e) {
          if (!(e instanceof Deno.errors.NotFound)) throw e;
        }
      }
    }
  }, () => checkKeepOut(out, force));
  return { sweep, out, runs: results.length, manifests };
}
