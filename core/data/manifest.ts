/**
 * manifest.json of a dataset artifact (see docs/dataset-format.md). It holds no wall-clock time:
 * the same inputs and options give a byte-identical artifact.
 */
import { z } from "zod";

export const DATASET_FORMAT = "duaf-dataset";
export const DATASET_VERSION = 1;

export const SourceSchema = z.object({
  path: z.string(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  bytes: z.number().int().nonnegative(),
});

export const ModalityInfoSchema = z.object({
  dim: z.number().int().positive(),
  /** Fraction of items 1..I whose mask is 1. */
  coverage: z.number().min(0).max(1),
  /** "tfidf-svd", "onnx:MODEL" or "file:PATH". */
  source: z.string(),
});

export const LayerInfoSchema = z.object({
  /** Width of each cached layer, in column order. */
  widths: z.array(z.number().int().positive()).min(1),
  /** "onnx:MODEL" (intermediate block outputs) or "file:PATH". */
  source: z.string(),
});

export const SkipSchema = z.object({
  file: z.string(),
  field: z.string(),
  problem: z.string(),
  count: z.number().int().positive(),
  firstLine: z.number().int().positive().nullable(),
});

export const ManifestSchema = z.object({
  format: z.literal(DATASET_FORMAT),
  version: z.literal(DATASET_VERSION),
  duaf: z.string(),
  name: z.string(),
  sources: z.array(SourceSchema),
  /** Every preprocess option that shaped the artifact (output path excluded). */
  options: z.record(z.string(), z.unknown()),
  counts: z.object({
    users: z.number().int().positive(),
    items: z.number().int().positive(),
    interactions: z.number().int().positive(),
    categories: z.number().int().positive(),
  }),
  timestamps: z.object({ min: z.number(), max: z.number(), unit: z.literal("s") }),
  modalities: z.object({
    text: ModalityInfoSchema.optional(),
    image: ModalityInfoSchema.optional(),
  }),
  /**
   * Layer-wise frozen states per modality (IISAN), present only when preprocess stored them:
   * items.safetensors `{text,image}_layers` [I+1, Σ widths], layer k at its offset.
   */
  layers: z.object({
    text: LayerInfoSchema.optional(),
    image: LayerInfoSchema.optional(),
  }).optional(),
  /** Category names by index (0 = "unknown") and the rule that chose each item's label. */
  categories: z.object({ mode: z.enum(["leaf", "first", "set"]), names: z.array(z.string()) }),
  splits: z.object({
    scheme: z.literal("leave-one-out"),
    valid: z.literal("second-last"),
    test: z.literal("last"),
  }),
  /** What preprocessing removed, for the record. */
  filtering: z.object({
    inputInteractions: z.number().int().nonnegative(),
    duplicates: z.number().int().nonnegative(),
    kcoreRemoved: z.number().int().nonnegative(),
    truncated: z.number().int().nonnegative(),
    skipped: z.array(SkipSchema),
  }),
});

export type Manifest = z.infer<typeof ManifestSchema>;
export type ModalityInfo = z.infer<typeof ModalityInfoSchema>;
export type SourceEntry = z.infer<typeof SourceSchema>;
