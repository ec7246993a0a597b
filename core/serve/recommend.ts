/**
 * Serving: turns requests ({user} or {history, timestamps}) into padded batches, scores every
 * item and returns the top k with raw ids. Problems with one request never stop the others.
 */
import { z } from "zod";
import { noGrad, tidy } from "../tensor.ts";
import { Rng } from "../random.ts";
import type { SequenceBatch } from "../models/batch.ts";
import type { ModalityWeights } from "../models/model.ts";
import { batchFromHistories, type History } from "../models/examples.ts";
import type { OpenRun } from "../train/run.ts";
import type { BatchScorer } from "./scorer.ts";
import { topK } from "./topk.ts";

export interface RecommendRequest {
  /** Where the request came from, for messages ("stdin:12", "--user A1"). */
  source: string;
  value: unknown;
}

export interface Recommendation {
  user?: string;
  items: string[];
  scores: number[];
  /** Per history step, the fusion weight of each modality (duafmat with --explain). */
  weights?: Record<string, number>[];
}

export type RecommendOutcome =
  | { result: Recommendation; warnings: string[] }
  | { error: string };

const RequestSchema = z.union([
  z.object({ user: z.union([z.string(), z.number()]) }).strict(),
  z.object({
    history: z.array(z.union([z.string(), z.number()])).min(1),
    timestamps: z.array(z.number()).optional(),
  }).strict(),
]);

interface Lookup {
  userIndex: Map<string, number>;
  itemIndex: Map<string, number>;
  itemIds: string[];
}

const lookups = new WeakMap<OpenRun, Lookup>();

function lookup(run: OpenRun): Lookup {
  let l = lookups.get(run);
  if (!l) {
    const itemIds = run.dataset.itemIds();
    l = {
      userIndex: new Map(run.dataset.userIds().map((id, i) => [id, i])),
      itemIndex: new Map(itemIds.map((id, i) => [id, i] as [string, number]).slice(1)),
      itemIds,
    };
    lookups.set(run, l);
  }
  return l;
}

function resolve(
  run: OpenRun,
  req: RecommendRequest,
): { history: History; user?: string; warnings: string[] } | { error: string } {
  const parsed = RequestSchema.safeParse(req.value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return {
      error: `${req.source}: ${
        issue.path.join(".") || "request"
      }: expected {"user": ID} or {"history": [...], "timestamps"?: [...]}`,
    };
  }
  const l = lookup(run);
  const ds = run.dataset;
  if ("user" in parsed.data) {
    const id = String(parsed.data.user);
    const u = l.userIndex.get(id);
    if (u === undefined) return { error: `${req.source}: user: unknown user '${id}'` };
    const from = ds.seqOffsets[u];
    const to = ds.seqOffsets[u + 1];
    return {
      user: id,
      history: {
        items: [...ds.seqItems.subarray(from, to)],
        times: [...ds.seqTimes.subarray(from, to)],
        user: u,
      },
      warnings: [],
    };
  }
  const { history, timestamps } = parsed.data;
  if (timestamps && timestamps.length !== history.length) {
    return {
      error: `${req.source}: timestamps: ${timestamps.length} values for ${history.length} items`,
    };
  }
  const warnings: string[] = [];
  const items: number[] = [];
  const times: number[] = [];
  // Without timestamps, steps are spaced one day apart ending now-ish: the time embeddings see
  // a regular rhythm rather than one burst.
  const lastT = run.origin + 86400 * 365;
  history.forEach((raw, i) => {
    const idx = l.itemIndex.get(String(raw));
    if (idx === undefined) {
      warnings.push(`${req.source}: history[${i}]: unknown item '${raw}' skipped`);
      return;
    }
    items.push(idx);
    times.push(timestamps ? timestamps[i] : lastT - 86400 * (history.length - 1 - i));
  });
  if (!items.length) return { error: `${req.source}: history: no known items` };
  return { history: { items, times }, warnings };
}

export interface RecommendOptions {
  k: number;
  includeSeen: boolean;
  explain: boolean;
}

/** Scores with the engine model of the run (synchronous; what `duaf recommend` runs by default). */
export function recommendBatch(
  run: OpenRun,
  requests: RecommendRequest[],
  opts: RecommendOptions,
): RecommendOutcome[] {
  const plan = planBatch(run, requests);
  if (!plan.batch) return plan.resolved as RecommendOutcome[];
  const batch = plan.batch;
  const ctx = { training: false, rng: new Rng(0), frozen: run.frozen };
  const { scores, weights } = noGrad(() =>
    tidy(() => ({
      scores: run.model.scoreAll(batch, ctx).toFloat32(),
      weights: opts.explain && run.model.explain ? run.model.explain(batch, ctx) : null,
    }))
  );
  const missing = `--explain: model ${run.manifest.config.model} has no modality weights`;
  return finishBatch(run, plan, scores, weights, opts, missing);
}

/** The same through any scorer (an exported graph on onnxruntime with `--runtime ort`). */
export async function recommendWith(
  run: OpenRun,
  scorer: BatchScorer,
  requests: RecommendRequest[],
  opts: RecommendOptions,
): Promise<RecommendOutcome[]> {
  const plan = planBatch(run, requests);
  if (!plan.batch) return plan.resolved as RecommendOutcome[];
  const scores = await scorer.scoreAll(plan.batch);
  const weights = opts.explain && scorer.explain ? scorer.explain(plan.batch) : null;
  const missing = scorer.explain
    ? `--explain: model ${run.manifest.config.model} has no modality weights`
    : `--explain: the ${scorer.runtime} runtime gives no modality weights`;
  return finishBatch(run, plan, scores, weights, opts, missing);
}

type Resolved = ReturnType<typeof resolve>;

interface Plan {
  resolved: Resolved[];
  /** The padded batch of the requests that resolved (null when none did). */
  batch: SequenceBatch | null;
}

function planBatch(run: OpenRun, requests: RecommendRequest[]): Plan {
  const resolved = requests.map((r) => resolve(run, r));
  const ok = resolved.filter((r): r is Exclude<typeof r, { error: string }> => !("error" in r));
  if (!ok.length) return { resolved, batch: null };
  const batch = batchFromHistories(
    ok.map((r) => r.history),
    run.manifest.config.maxLen,
    run.origin,
  );
  return { resolved, batch };
}

function finishBatch(
  run: OpenRun,
  plan: Plan,
  scores: Float32Array,
  weights: ModalityWeights | null,
  opts: RecommendOptions,
  missingWeights: string,
): RecommendOutcome[] {
  const batch = plan.batch!;
  const cols = run.dataset.numItems + 1;
  const l = lookup(run);
  let row = 0;
  return plan.resolved.map((r) => {
    if ("error" in r) return r;
    const seen = new Set(opts.includeSeen ? [] : r.history.items);
    const top = topK(scores, row, cols, opts.k, (c) => c === 0 || seen.has(c));
    const result: Recommendation = {
      ...(r.user !== undefined ? { user: r.user } : {}),
      items: [...top.items].map((i) => l.itemIds[i]),
      scores: [...top.scores].map((s) => Number(s.toFixed(6))),
    };
    if (opts.explain) {
      if (!weights) r.warnings.push(missingWeights);
      else result.weights = weights.perRow(row, batch.lengths[row]);
    }
    row++;
    return { result, warnings: r.warnings };
  });
}
