/**
 * The shared trainer: seeded shuffles, one tape per step inside a memory scope, per-epoch
 * full-ranking validation, early stopping on a chosen metric, and checkpoints that let an
 * interrupted run resume to exactly the same result. An epoch's examples are every prefix of
 * every training history (trainMode "prefix") or one window per user with a target at every
 * position ("window").
 *
 * Two generators make resumption exact: `orderRng` draws each epoch's shuffle and random window
 * ends (its state is saved at the epoch start, so a resumed epoch regenerates the same order),
 * and `stepRng` draws everything inside a step (dropout seeds, negatives, noise; its state is
 * saved after each step).
 */
import type { TrainConfig } from "../config.ts";
import { evaluate } from "../eval/evaluate.ts";
import type { SequentialModel } from "../models/model.ts";
import { type Adam, clipGradNorm } from "../optim/adam.ts";
import { type Progress, silentProgress } from "../progress.ts";
import { Rng } from "../random.ts";
import { backward, full, getBackend, tidy } from "../tensor.ts";
import { CPU_TOKEN_BUDGET } from "../backend.ts";
import { LossLog } from "./loss_log.ts";
import {
  type Examples,
  makeBatch,
  microBatches,
  type SequenceSource,
  splitExamples,
  timestampOrigin,
  windowExamples,
} from "../models/examples.ts";
import { lossCount } from "../models/batch.ts";
import { negativeDistribution } from "../models/negatives.ts";
import {
  bucketedOrder,
  randomWindowEnds,
  sampledPrefixCount,
  sampledPrefixes,
  shuffledOrder,
} from "./order.ts";

export interface EpochRecord {
  epoch: number;
  steps: number;
  seconds: number;
  examplesPerSecond: number;
  loss: Record<string, number>;
  valid: Record<string, number>;
}

/** Everything needed to continue a run where it stopped. */
export interface TrainerState {
  epoch: number;
  /** Steps already done in `epoch` (0 at an epoch boundary). */
  step: number;
  orderRngAtEpochStart: number[];
  stepRng: number[];
  adamStep: number;
  bestMetric: number;
  bestEpoch: number;
  badEpochs: number;
  history: EpochRecord[];
  /** Running sums of the loss parts in the current, unfinished epoch. */
  partialLoss: Record<string, number>;
  partialSeconds: number;
}

export interface TrainHooks {
  progress?: Progress;
  /** Polled between steps; true stops the run after saving state (SIGINT). */
  shouldStop?: () => boolean;
  /** Persists the resumable state (called at every epoch end and on stop). */
  saveState?: (state: TrainerState, optimizer: Adam) => Promise<void>;
  /** Persists the best model so far (called when validation improves). */
  saveBest?: (state: TrainerState) => Promise<void>;
  /** Called after each epoch's validation. */
  onEpoch?: (record: EpochRecord) => void;
  /**
   * Also save the state mid-epoch once this many seconds have passed since the last save
   * (0 or absent: epoch ends and stops only). Resuming from any step is exact.
   */
  checkpointSeconds?: number;
}

export interface TrainOutcome {
  state: TrainerState;
  stopped: "converged" | "max-epochs" | "interrupted";
}

export function initialState(seed: number): TrainerState {
  return {
    epoch: 0,
    step: 0,
    orderRngAtEpochStart: new Rng(seed).getState(),
    stepRng: new Rng(seed ^ 0x5bd1e995).getState(),
    adamStep: 0,
    bestMetric: -Infinity,
    bestEpoch: -1,
    badEpochs: 0,
    history: [],
    partialLoss: {},
    partialSeconds: 0,
  };
}

/** "name value" pairs with four decimals (loss parts, metrics), for progress and log lines. */
export function formatNamed(values: Record<string, number>, sep = ", "): string {
  return Object.entries(values).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(sep);
}

/**
 * Floats one SASRec token keeps for backward at the default width: about CPU_TOKEN_BUDGET's
 * 1.5 GB over its 32768 tokens. Window training with CE also keeps logits over all items at
 * every token (the logits, their log-softmax and its gradient), which the micro-batch budget
 * counts in the same unit: on Beauty's 12,101 items a token then weighs about 4 SASRec tokens.
 */
const SASREC_FLOATS_PER_TOKEN = 11500;

/** Padded tokens per micro-batch (0 = no split): the token budget over the model's weight. */
export function microBatchTokens(cfg: TrainConfig, memoryFactor: number, numItems: number): number {
  const tokenBudget = cfg.tokenBudget === "auto"
    ? getBackend().microBatchTokens ?? CPU_TOKEN_BUDGET
    : cfg.tokenBudget;
  const logitsPerToken = cfg.trainMode === "window" && cfg.loss === "ce"
    ? 3 * (numItems + 1) / SASREC_FLOATS_PER_TOKEN
    : 0;
  return Math.floor(tokenBudget / (memoryFactor + logitsPerToken));
}

/** Longest run of synchronous steps between turns of the event loop. */
/** The generator seed of `validUsers`' sample: fixed, so every run validates on the same users. */
const VALID_SAMPLE_SEED = 0x7a11d;

const YIELD_EVERY_MS = 20;
/** An epoch's examples (prefixes or windows) and its optimizer steps under `cfg`. */
export function epochPlan(
  src: SequenceSource,
  cfg: TrainConfig,
): { examples: Examples; n: number; sampling: boolean; stepsPerEpoch: number } {
  // n: the epoch's examples (sampled prefixes count once each).
  const window = cfg.trainMode === "window";
  const examples = window ? windowExamples(src) : splitExamples(src, "train");
  const sampling = !window && cfg.prefixPerUser > 0;
  const n = sampling ? sampledPrefixCount(examples, cfg.prefixPerUser) : examples.users.length;
  return { examples, n, sampling, stepsPerEpoch: Math.ceil(n / cfg.batchSize) };
}

/** How often the loss parts are read back for the progress line (each read waits for the GPU). */
const READ_LOSS_EVERY_MS = 500;

/**
 * Steps are synchronous, so without a turn of the event loop a SIGINT listener (which sets the
 * flag that shouldStop reads) could not run before the epoch ends.
 */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

export async function train(
  model: SequentialModel,
  src: SequenceSource,
  cfg: TrainConfig,
  optimizer: Adam,
  state: TrainerState,
  hooks: TrainHooks = {},
): Promise<TrainOutcome> {
  const progress = hooks.progress ?? silentProgress;
  const window = cfg.trainMode === "window";
  const { examples, n, sampling, stepsPerEpoch } = epochPlan(src, cfg);
  const origin = timestampOrigin(src);
  const steps = cfg.maxSteps > 0 ? Math.min(cfg.maxSteps, stepsPerEpoch) : stepsPerEpoch;
  const orderRng = new Rng(0);
  const stepRng = new Rng(0);
  stepRng.setState(state.stepRng);
  optimizer.step_ = state.adamStep;
  const params = model.trainableParameters?.() ?? model.parameters();
  // Popularity-sampled negatives count items in the training split only.
  const negatives = negativeDistribution(cfg, src);
  const microTokens = microBatchTokens(cfg, model.memoryFactor ?? 1, src.numItems);
  const validate = () =>
    evaluate(model, src, {
      split: "valid",
      ks: cfg.validKs,
      maskSeen: false,
      batchSize: cfg.evalBatchSize,
      maxLen: cfg.maxLen,
      origin,
      progress,
      // The same users at every epoch and in every run of the dataset (a fixed generator).
      sample: cfg.validUsers > 0
        ? { n: cfg.validUsers, rng: new Rng(VALID_SAMPLE_SEED) }
        : undefined,
    }).metrics;

  if (model.trainable === false) {
    // Statistics-only models (most-popular) are fitted once; one "epoch" records their validation.
    const t0 = performance.now();
    model.fit?.(src);
    const valid = validate();
    state.epoch = 1;
    state.bestEpoch = 1;
    state.bestMetric = valid[cfg.metric] ?? 0;
    state.history.push({
      epoch: 1,
      steps: 0,
      seconds: (performance.now() - t0) / 1000,
      examplesPerSecond: 0,
      loss: {},
      valid,
    });
    await hooks.saveBest?.(state);
    await hooks.saveState?.(state, optimizer);
    return { state, stopped: "converged" };
  }

  const log = new LossLog();
  const checkpointMs = (hooks.checkpointSeconds ?? 0) * 1000;
  try {
    while (state.epoch < cfg.epochs) {
      orderRng.setState(state.orderRngAtEpochStart);
      const epochExamples = window && cfg.windowEnd === "random"
        ? randomWindowEnds(examples, cfg.maxLen, orderRng)
        : sampling
        ? sampledPrefixes(examples, cfg.prefixPerUser, orderRng)
        : examples;
      const order = cfg.bucket
        ? bucketedOrder(epochExamples, cfg.maxLen, cfg.batchSize, orderRng)
        : shuffledOrder(n, orderRng);
      // Training mode first: a model may prepare for training there (DuAF-MAT builds VSCL's
      // neighbour indexes), which is not an epoch's work.
      model.train();
      const task = progress.start(`epoch ${state.epoch + 1}`, steps, "steps");
      if (state.step > 0) task.tick(state.step);
      let t0 = performance.now();
      let lastYield = t0;
      let lastRead = t0;
      let lastSave = t0;
      // Everything a resume at this step needs, saved through the hook.
      const saveMidEpoch = async () => {
        const now = performance.now();
        log.drainInto(state.partialLoss);
        state.partialSeconds += (now - t0) / 1000;
        t0 = now;
        lastSave = now;
        state.stepRng = stepRng.getState();
        state.adamStep = optimizer.step_;
        await hooks.saveState?.(state, optimizer);
      };
      for (; state.step < steps; state.step++) {
        if (hooks.shouldStop && performance.now() - lastYield >= YIELD_EVERY_MS) {
          await yieldToEventLoop();
          lastYield = performance.now();
        }
        if (hooks.shouldStop?.()) {
          task.done("interrupted");
          await saveMidEpoch();
          return { state, stopped: "interrupted" };
        }
        if (
          checkpointMs > 0 && state.step > 0 && performance.now() - lastSave >= checkpointMs
        ) await saveMidEpoch();
        const start = state.step * cfg.batchSize;
        const end = Math.min(n, start + cfg.batchSize);
        const batch = makeBatch(
          src,
          epochExamples,
          order,
          start,
          end,
          cfg.maxLen,
          origin,
          model.needsNegatives ? stepRng : null,
          window,
        );
        const ctx = { training: true, rng: stepRng, negatives };
        log.beginStep();
        const terms = lossCount(batch);
        for (const micro of microBatches(batch, microTokens, model.padsTo)) {
          // Each micro-batch's mean loss is weighted by its share of the batch's loss terms (rows,
          // or targets in window training), so accumulated gradients equal the whole batch's.
          const weight = lossCount(micro) / terms;
          tidy(() => {
            const out = model.loss(micro, ctx);
            // Log the loss parts first: backward releases the graph as it goes.
            log.addWeighted(out.parts, weight);
            backward(out.total, full(out.total.shape, weight), { release: true });
          });
        }
        tidy(() => {
          if (cfg.clipNorm > 0) clipGradNorm(params, cfg.clipNorm);
          optimizer.step();
          optimizer.zeroGrad();
        });
        const extra = model.afterStep?.(batch, ctx) ?? {};
        log.addStep(extra);
        for (const t of Object.values(extra)) t.dispose();
        const now = performance.now();
        if (now - lastRead >= READ_LOSS_EVERY_MS) {
          log.drainInto(state.partialLoss);
          lastRead = now;
        }
        const elapsed = state.partialSeconds + (now - t0) / 1000;
        task.tick(1, `${formatNamed(log.last, " ")} ${(end / elapsed).toFixed(0)} ex/s`);
      }
      log.drainInto(state.partialLoss);
      const seconds = state.partialSeconds + (performance.now() - t0) / 1000;
      task.done();
      const valid = validate();
      const loss: Record<string, number> = {};
      for (const [k, v] of Object.entries(state.partialLoss)) loss[k] = v / steps;
      const record: EpochRecord = {
        epoch: state.epoch + 1,
        steps,
        seconds,
        examplesPerSecond: Math.min(n, steps * cfg.batchSize) / seconds,
        loss,
        valid,
      };
      state.history.push(record);
      hooks.onEpoch?.(record);
      const score = valid[cfg.metric];
      if (score === undefined) throw new Error(`metric ${cfg.metric} not computed`);
      // Advance to the next epoch before saving, so a saved state always points at unfinished work.
      state.epoch++;
      state.orderRngAtEpochStart = orderRng.getState();
      state.step = 0;
      state.partialLoss = {};
      state.partialSeconds = 0;
      state.stepRng = stepRng.getState();
      state.adamStep = optimizer.step_;
      const improved = score > state.bestMetric;
      if (improved) {
        state.bestMetric = score;
        state.bestEpoch = state.epoch;
        state.badEpochs = 0;
      } else state.badEpochs++;
      if (improved) await hooks.saveBest?.(state);
      await hooks.saveState?.(state, optimizer);
      if (state.badEpochs >= cfg.patience) return { state, stopped: "converged" };
    }
    return { state, stopped: "max-epochs" };
  } finally {
    log.dispose();
  }
}
