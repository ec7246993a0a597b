/**
 * Typed training configuration (zod), with RecBole's SASRec defaults and the DuAF-MAT paper's
 * defaults. Unknown keys are errors with a did-you-mean suggestion; `--set a.b=value` overrides
 * are parsed against the schema so numbers, booleans and enums are checked.
 */
import { z } from "zod";
import { UsageError } from "./errors.ts";

export const MODEL_KINDS = [
  "sasrec",
  "gru4rec",
  "fdsa",
  "duafmat",
  "pop",
  "nova",
  "difsr",
  "bert4rec",
  "lrurec",
  "unisrec",
  "tedrec",
  "m3srec",
  "missrec",
  "iisan",
] as const;
export type ModelKind = typeof MODEL_KINDS[number];

const DuafSchema = z.object({
  /** Modalities used besides the ID ("text", "image"); absent ones are skipped with a notice. */
  modalities: z.array(z.enum(["text", "image"])).default(["text", "image"]),
  /** false = the -DuAF ablation: average fusion instead of user- and time-aware weights. */
  fusion: z.boolean().default(true),
  /** false = the -MAT_MoE ablation: missing visual features are filled by `missingFill`. */
  matMoe: z.boolean().default(true),
  /** How missing modality features are filled when MAT-MoE is off (or for text). */
  missingFill: z.enum(["mat", "zero", "random", "mean"]).default("mat"),
  /** Time-embedding width d_t (even). */
  timeDim: z.number().int().positive().multipleOf(2).default(16),
  /**
   * The user representation s_u in the fusion weights (the paper leaves its source open):
   * "prefix" = causal running mean of the average-fused embeddings up to each step;
   * "id" = the same over ID embeddings only. See core/models/duaf/fusion.ts.
   */
  query: z.enum(["prefix", "id"]).default("prefix"),
  /**
   * Multiplier of the fusion logits <s_u, tanh(e + e_time)> before the softmax (1 = the paper).
   * With N(0, 0.02) embeddings the logits start near 0, so the weights start uniform.
   */
  weightScale: z.number().positive().default(1),
  /**
   * The fusion's score: "eq7" = the paper's <s_u, tanh(e^m + e_time)>; "projected" = a query from
   * [s_u; e_time] and a key projection per modality, both layer-normalised (fusion.ts says why).
   */
  fusionScore: z.enum(["eq7", "projected"]).default("eq7"),
  /** Item vectors that sequence representations are scored against. */
  scoreWith: z.enum(["fused", "id"]).default("fused"),
  /** Gradient penalty on the critic's logit (WGAN-GP style) or on its sigmoid output. */
  gpOn: z.enum(["logit", "sigmoid"]).default("logit"),
  experts: z.number().int().positive().default(4),
  noiseDim: z.number().int().positive().default(32),
  expertHidden: z.number().int().positive().default(128),
  categoryDim: z.number().int().positive().default(16),
  criticHidden: z.number().int().positive().default(64),
  criticSteps: z.number().int().positive().default(1),
  /** Gradient-penalty weight λ_gp (Eq. 16) and the generator's adversarial weight. */
  lambdaGp: z.number().nonnegative().default(1e-3),
  lambdaAdv: z.number().nonnegative().default(0.1),
  /** Samples drawn per missing item at inference; the mean of those D accepts is used. */
  inferenceSamples: z.number().int().positive().default(8),
  /**
   * Fraction of the present images hidden from training (a fixed choice, the same for every
   * seed and configuration), to measure MAT-MoE's reconstruction of them against the real
   * features: the test metrics then carry recon.* cosines (core/eval/reconstruction.ts).
   */
  hideImages: z.number().min(0).max(0.9).default(0),
  /** Train-time modality dropout rate (the paper's best: 0.6). */
  modalityDropout: z.number().min(0).max(1).default(0.6),
  /**
   * With matMoe off: drop present images at modalityDropout too, and give them missingFill's
   * row, so the fills face the same train-time dropout as MAT-MoE. Off (the default), as the
   * −MAT_MoE ablation has always trained: the fills only stand in for images that are missing.
   */
  fillDropout: z.boolean().default(false),
  cscl: z.boolean().default(true),
  vscl: z.boolean().default(true),
  lambda1: z.number().nonnegative().default(0.2),
  lambda2: z.number().nonnegative().default(0.2),
  tau: z.number().positive().default(0.5),
  /** VSCL insertion sampling: γ mixes similarity to the left/right item; λ is its temperature. */
  gamma: z.number().min(0).max(1).default(0.5),
  lambdaTemp: z.number().positive().default(0.1),
  /** Expected insertions per sequence = poissonRate × length. */
  poissonRate: z.number().nonnegative().default(0.1),
  /** Candidate pool size for VSCL insertions (top similar items per item). */
  vsclCandidates: z.number().int().positive().default(20),
  /**
   * Batch rows that also get a virtual sequence (in-batch negatives for VSCL), per optimizer
   * step: a batch split into micro-batches (tokenBudget) gives each its share.
   */
  vsclRows: z.number().int().positive().default(512),
}).strict();

export const TrainConfigSchema = z.object({
  model: z.enum(MODEL_KINDS).default("sasrec"),
  seed: z.number().int().nonnegative().default(2020),
  epochs: z.number().int().positive().default(300),
  batchSize: z.number().int().positive().default(2048),
  evalBatchSize: z.number().int().positive().default(512),
  lr: z.number().positive().default(1e-3),
  weightDecay: z.number().nonnegative().default(0),
  clipNorm: z.number().nonnegative().default(0),
  maxLen: z.number().int().positive().default(50),
  /**
   * "ce": softmax over all items (RecBole's default); "bce": one sampled negative per position
   * (the original SASRec); "gbce": gSASRec's generalised BCE over `negatives` uniform negatives
   * with calibration `gbceT` (Petrov and Macdonald, RecSys 2023); "sampled": softmax over the
   * target and `negatives` uniform negatives (sampled softmax).
   */
  loss: z.enum(["ce", "bce", "gbce", "sampled"]).default("ce"),
  /** gbce / sampled: negatives per loss position, drawn uniformly over all items (seeded). */
  negatives: z.number().int().positive().default(256),
  /** gbce: calibration t in [0, 1]; β = α(t(1 - 1/α) + 1/α), α = negatives / (items - 1). */
  gbceT: z.number().min(0).max(1).default(0.75),
  /**
   * gbce / sampled: negatives drawn uniformly, or by popularity q(i) ∝ (train count + 1)^power
   * (core/models/negatives.ts; sampled softmax then takes the logQ correction).
   */
  negativeSampling: z.enum(["uniform", "popularity"]).default("uniform"),
  /** The popularity exponent: 1 = unigram, 0.75 = word2vec's smoothing, 0 = uniform. */
  popularityPower: z.number().min(0).max(1).default(0.75),
  /**
   * gbce / sampled: "position" = each loss position draws its own `negatives` (gSASRec);
   * "batch" = one draw shared by every position of a micro-batch, scored by one GEMM: no
   * [positions x negatives x d] candidate rows, for catalogs of 10^5+ items.
   */
  negativeSharing: z.enum(["position", "batch"]).default("position"),
  /**
   * SASRec's scoring table: "tied" = the input item embedding (RecBole's SASRec), "separate" = an
   * output table of its own (gSASRec's reuse_item_embeddings=False, its default).
   */
  outputEmbedding: z.enum(["tied", "separate"]).default("tied"),
  /**
   * Full CE in item blocks (core/ops/linear_ce.ts): the [batch x items] logits are never
   * materialised. "auto" = plain CE while those logits fit 256 MiB (checkpoints as before), blocks
   * with a 32 MiB scratch above; 0 = always plain; N = always blocks of N items.
   */
  ceChunkItems: z.union([z.literal("auto"), z.number().int().nonnegative()], {
    error: `expected "auto" or a whole number >= 0`,
  }).default("auto"),
  /**
   * loss=ce: the precision of its products with the item table (the logits and both gradients).
   * "fp32" (default); "bf16" rounds their operands to bfloat16 and sums in float32, about 1.6x
   * faster on AMD Zen 4 with AVX-512 BF16 (native backend; not faster on Intel Xeon). A choice of
   * precision: results differ from fp32 runs (docs/config.md).
   */
  ceProducts: z.enum(["fp32", "bf16"]).default("fp32"),
  /**
   * What one epoch trains on. "prefix" (RecBole): every prefix of every training history is an
   * example, with the loss at its last position. "window" (the original SASRec): one example per
   * user, the last maxLen + 1 items of the training history, with the loss at every position
   * (mean per target over the batch). Far fewer tokens per epoch on long histories. Not used by
   * pop.
   */
  trainMode: z.enum(["prefix", "window"]).default("prefix"),
  /**
   * Window training: "last" = each user's most recent window every epoch (the original SASRec);
   * "random" = a window end drawn per user and epoch, so histories longer than maxLen + 1 also
   * train on their older targets.
   */
  windowEnd: z.enum(["last", "random"]).default("last"),
  /**
   * Prefix training: 0 = every prefix every epoch (RecBole); N > 0 = N prefixes per user and
   * epoch (all of a shorter history's), drawn anew each epoch. An affordable prefix mode for
   * long histories and for models that cannot train on windows (a non-causal filter or decoder).
   */
  prefixPerUser: z.number().int().nonnegative().default(0),
  patience: z.number().int().positive().default(10),
  /**
   * Validation (early stopping, the best checkpoint) on this many users, drawn once with a fixed
   * generator so every run of a dataset sees the same ones; 0 = every user. Test ranks every user.
   */
  validUsers: z.number().int().nonnegative().default(0),
  metric: z.string().regex(/^(ndcg|mrr|hit|recall)@\d+$/).default("ndcg@10"),
  validKs: z.array(z.number().int().positive()).default([5, 10, 20]),
  /**
   * Group examples of similar length into batches (sorted within windows of 32 batches, batch
   * order shuffled). Outputs per example are unchanged; only batch composition differs from
   * RecBole's, and padded compute drops several-fold on short-sequence data.
   */
  bucket: z.boolean().default(true),
  /**
   * Largest micro-batch in padded tokens (rows × length); bigger batches are split and their
   * gradients accumulated before one optimizer step (exact for CE/BCE; in-batch contrastive
   * negatives then come from the micro-batch). 0 = never split. "auto" = the backend's own: 32768
   * on the CPU backends, where it bounds peak memory, and 262144 on cuda, where a Beauty batch
   * (2048 x 50) then runs whole and fewer, larger kernels pay off.
   */
  tokenBudget: z.union([z.literal("auto"), z.number().int().nonnegative()], {
    error: `expected "auto" or a whole number >= 0`,
  }).default("auto"),
  /** Stop each epoch after this many steps (0 = full epoch); for quick runs and benchmarks. */
  maxSteps: z.number().int().nonnegative().default(0),
  hidden: z.number().int().positive().default(64),
  layers: z.number().int().positive().default(2),
  heads: z.number().int().positive().default(2),
  inner: z.number().int().positive().default(256),
  hiddenDropout: z.number().min(0).max(1).default(0.5),
  attnDropout: z.number().min(0).max(1).default(0.5),
  layerNormEps: z.number().positive().default(1e-12),
  initStd: z.number().positive().default(0.02),
  /** GRU4Rec (RecBole's GRU4Rec.yaml: hidden_size 128, num_layers 1, dropout_prob 0.3). */
  gruHidden: z.number().int().positive().default(128),
  gruLayers: z.number().int().positive().default(1),
  gruDropout: z.number().min(0).max(1).default(0.3),
  /** BERT4Rec (RecBole's BERT4Rec.yaml): cloze mask probability, last-item-only batch share. */
  bert4recMaskRatio: z.number().min(0).max(1).default(0.2),
  bert4recFtRatio: z.number().min(0).max(1).default(0.5),
  /**
   * LRURec (the reference's defaults; d and the block count are `hidden` and `layers`): dropout
   * on embeddings and feed-forward, dropout on the recurrence output, |λ| ring at initialisation.
   */
  lruDropout: z.number().min(0).max(1).default(0.2),
  lruAttnDropout: z.number().min(0).max(1).default(0.2),
  lruRMin: z.number().positive().lt(1).default(0.8),
  lruRMax: z.number().positive().lt(1).default(0.99),
  duafmat: DuafSchema.default(DuafSchema.parse({})),
  /** NOVA: item attributes fused into attention queries/keys ("category", "text"). */
  novaAttributes: z.array(z.enum(["category", "text"])).default(["category"]),
  /** NOVA's fusion of ID, position and attributes: the paper's sum, concat or gating. */
  novaFusion: z.enum(["sum", "concat", "gate"]).default("gate"),
  /** DIF-SR (the authors' RecBole SASRecD): attributes with their own attention scores. */
  difsrAttributes: z.array(z.enum(["category", "text"])).default(["category"]),
  /** DIF-SR attribute embedding width (attribute_hidden_size); a multiple of heads. */
  difsrAttributeHidden: z.number().int().positive().default(64),
  /** DIF-SR score fusion (fusion_type); concat and gate need trainMode prefix. */
  difsrFusion: z.enum(["sum", "concat", "gate"]).default("sum"),
  /** DIF-SR attribute-prediction loss weights per attribute (lamdas); categorical only. */
  difsrLambdas: z.array(z.number().nonnegative()).default([10]),
  /** DIF-SR: attribute tables N(0, 1) and never trained, as the reference code leaves them. */
  difsrFreezeAttributes: z.boolean().default(false),
  /**
   * UniSRec (the reference's props/UniSRec.yaml; d is `hidden`): "pretrain" trains the
   * contrastive objective without item IDs, "finetune" the next-item CE on temperature-scaled
   * cosines, text only ("inductive") or text plus item IDs ("transductive", the reference's).
   */
  unisrecStage: z.enum(["pretrain", "finetune"]).default("finetune"),
  unisrecMode: z.enum(["inductive", "transductive"]).default("transductive"),
  /** MoE adaptor: experts (n_exps), dropout on the text input (adaptor_dropout_prob). */
  unisrecExperts: z.number().int().positive().default(8),
  unisrecAdaptorDropout: z.number().min(0).max(1).default(0.2),
  /** Gate noise in training (the reference's noisy gating, on by default). */
  unisrecNoisyGating: z.boolean().default(true),
  unisrecTemperature: z.number().positive().default(0.07),
  /** Pre-training: L_seq-item + λ L_seq-seq; item drop rate and the item-drop share of views. */
  unisrecLambda: z.number().nonnegative().default(1e-3),
  unisrecItemDropRatio: z.number().min(0).max(1).default(0.2),
  unisrecItemDropCoefficient: z.number().min(0).max(1).default(0.9),
  /** Fine-tuning from --init-from: position embedding and transformer fixed (fix_enc). */
  unisrecFixEncoder: z.boolean().default(true),
  /**
   * TedRec (the reference's props/TedRec.yaml): τ of the cosine logits, experts of the text
   * adaptor, its dropout on the text features, and noise on its gate logits in training.
   */
  tedrecTemperature: z.number().positive().default(0.07),
  tedrecExperts: z.number().int().positive().default(8),
  tedrecAdaptorDropout: z.number().min(0).max(1).default(0.2),
  tedrecNoisyGating: z.boolean().default(true),
  /** M3SRec: content modalities beside the ID ("text", "image"); absent ones skipped with a notice. */
  m3srecModalities: z.array(z.enum(["text", "image"])).default(["text", "image"]),
  /** M3SRec experts per MoE (each adaptor and the fusion); UniSRec's n_exps. */
  m3srecExperts: z.number().int().positive().default(8),
  /** M3SRec dropout on the frozen features entering the adaptors; UniSRec's adaptor_dropout_prob. */
  m3srecAdaptorDropout: z.number().min(0).max(1).default(0.2),
  /** M3SRec weight of the sequence-item contrastive loss per content modality (0 = off). */
  m3srecAuxWeight: z.number().nonnegative().default(0.1),
  /** M3SRec contrastive temperature; UniSRec's temperature. */
  m3srecTemperature: z.number().positive().default(0.07),
  /** MISSRec (the reference's props/*.yaml): pre-training or fine-tuning, with or without ID. */
  missrecStage: z.enum(["pretrain", "finetune"]).default("finetune"),
  missrecMode: z.enum(["inductive", "transductive"]).default("transductive"),
  /** MISSRec content modalities (modal_type img_text); absent ones skipped with a notice. */
  missrecModalities: z.array(z.enum(["text", "image"])).default(["text", "image"]),
  /** MISSRec item_mm_fusion: learned softmax weights over modality logits, or their mean. */
  missrecItemFusion: z.enum(["static", "dynamic_shared"]).default("dynamic_shared"),
  missrecTemperature: z.number().positive().default(0.07),
  /** MISSRec weight of the pre-training sequence-sequence loss (lambda). */
  missrecLambda: z.number().nonnegative().default(1e-3),
  /** MISSRec weight of the interest diversity regulariser (gamma). */
  missrecGamma: z.number().nonnegative().default(1e-4),
  /** MISSRec interests per (item, modality) pair (interest_ratio; finetune.yaml 0.5). */
  missrecInterestRatio: z.number().positive().max(1).default(0.5),
  /** MISSRec k-means passes of the interest discovery (cluster_kmeans niter). */
  missrecKmeansIters: z.number().int().positive().default(5),
  missrecItemDropRatio: z.number().min(0).max(1).default(0.2),
  missrecItemDropCoefficient: z.number().min(0).max(1).default(0.9),
  /** MISSRec fine-tuning from --init-from: fix position_embedding and the encoder-decoder. */
  missrecFixEncoder: z.boolean().default(true),
  /** IISAN side network width D (each cached layer is projected to it; the paper's is 768). */
  iisanSideDim: z.number().int().positive().default(128),
  /** IISAN adapter bottleneck (cv/bert_adapter_down_size). */
  iisanAdapterDown: z.number().int().positive().default(64),
  /** IISAN adapter activation (adapter_activation, RELU in the reference). */
  iisanAdapterActivation: z.enum(["relu", "gelu"]).default("relu"),
  /** IISAN gate temperature: gate = σ(γ / T) (0.1 in the reference). */
  iisanGateTemperature: z.number().positive().default(0.1),
}).strict();

export type TrainConfig = z.infer<typeof TrainConfigSchema>;
export type DuafConfig = z.infer<typeof DuafSchema>;

function levenshtein(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(
        d[i - 1][j] + 1,
        d[i][j - 1] + 1,
        d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
  }
  return d[a.length][b.length];
}

/** All dotted keys the schema accepts, e.g. "lr", "duafmat.experts". */
export function configKeys(): string[] {
  const top = Object.keys(TrainConfigSchema.shape);
  return [
    ...top.filter((k) => k !== "duafmat"),
    ...Object.keys(DuafSchema.shape).map((k) => `duafmat.${k}`),
  ];
}

function suggest(key: string): string {
  let best = "";
  let bestD = Infinity;
  for (const k of configKeys()) {
    const dist = levenshtein(key.toLowerCase(), k.toLowerCase());
    if (dist < bestD) [best, bestD] = [k, dist];
  }
  return bestD <= Math.max(2, key.length / 3) ? ` (did you mean '${best}'?)` : "";
}

function checkKeys(obj: Record<string, unknown>, prefix: string, source: string): void {
  const valid = new Set(configKeys());
  for (const [k, v] of Object.entries(obj)) {
    const full = prefix + k;
    if (k === "duafmat" && !prefix && v && typeof v === "object") {
      checkKeys(v as Record<string, unknown>, "duafmat.", source);
      continue;
    }
    if (!valid.has(full)) {
      throw new UsageError(`${source}: unknown config key '${full}'${suggest(full)}`);
    }
  }
}

let defaults: TrainConfig | null = null;

function defaultAt(key: string): unknown {
  defaults ??= TrainConfigSchema.parse({});
  const [head, tail] = key.split(".", 2);
  const top = (defaults as Record<string, unknown>)[head];
  return tail === undefined ? top : (top as Record<string, unknown>)?.[tail];
}

/** Parses one `--set key=value` value: JSON when it parses (numbers, booleans, arrays), else a string. */
function parseValue(raw: string): unknown {
  if (raw.includes(",") && !raw.startsWith("[")) return raw.split(",").map(parseValue);
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

/**
 * Builds a validated config from (in increasing precedence) defaults, a JSON file's object and
 * `key=value` overrides. Any problem is a UsageError naming the source and key.
 */
export function resolveConfig(
  fileObject: Record<string, unknown> | null,
  overrides: string[],
  fileName = "config",
): TrainConfig {
  const merged: Record<string, unknown> = structuredClone(fileObject ?? {});
  if (fileObject) checkKeys(fileObject, "", fileName);
  for (const o of overrides) {
    const eq = o.indexOf("=");
    if (eq <= 0) throw new UsageError(`--set ${o}: expected key=value`);
    const key = o.slice(0, eq);
    checkKeys(
      key.startsWith("duafmat.") ? { duafmat: { [key.slice(8)]: 0 } } : { [key]: 0 },
      "",
      "--set",
    );
    let value = parseValue(o.slice(eq + 1));
    // A single value for a list key is a one-element list (--set validKs=10).
    if (Array.isArray(defaultAt(key)) && !Array.isArray(value)) value = [value];
    if (key.startsWith("duafmat.")) {
      const sub = (merged.duafmat ??= {}) as Record<string, unknown>;
      sub[key.slice(8)] = value;
    } else merged[key] = value;
  }
  const parsed = TrainConfigSchema.safeParse(merged);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new UsageError(`${fileName}: ${issue.path.join(".") || "(root)"}: ${issue.message}`);
  }
  if (parsed.data.prefixPerUser > 0 && parsed.data.trainMode !== "prefix") {
    throw new UsageError(`${fileName}: prefixPerUser: applies to trainMode=prefix only`);
  }
  return parsed.data;
}
