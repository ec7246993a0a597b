/** A sweep directory's table: its manifest's configurations and results.jsonl, aggregated. */
import { UsageError } from "../errors.ts";
import { readResults } from "./results.ts";
import { aggregate, type SweepTable } from "./results.ts";
import { bestNeedsSeeds, readSweepManifest, type SweepManifest } from "./sweep.ts";

/** The swept keys: every key of the configurations' grid points, in first-seen order. */
export function sweptKeys(m: SweepManifest): string[] {
  return [...new Set(m.configs.flatMap((c) => Object.keys(c.point)))];
}

export async function openSweep(dir: string): Promise<SweepManifest> {
  const m = await readSweepManifest(dir);
  if (!m) throw new UsageError(`${dir}: not a duaf sweep (no manifest.json of format duaf-sweep)`);
  return m;
}

/** The table of sweep `dir` ranked by valid `metric` (default: the configurations' metric). */
export async function sweepTable(dir: string, metric?: string): Promise<SweepTable> {
  const m = await openSweep(dir);
  const results = await readResults(dir);
  const name = metric ?? m.base.metric;
  if (!/^(ndcg|mrr|hit|recall)@\d+$/.test(name)) {
    throw new UsageError(`--metric: expected ndcg@K, mrr@K, hit@K or recall@K, got '${name}'`);
  }
  const ids = m.configs.map((c) => c.configId);
  return aggregate(results, sweptKeys(m), name, ids, bestNeedsSeeds(m));
}
