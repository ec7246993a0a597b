/**
 * Tiny inputs for model tests: generated content features (text for every item, images for about
 * 60 % of them), ragged batches with timestamps, a small DuAF-MAT over them, a small transformer
 * config for the encoder models, and the check that a missing image never reaches the scores.
 */
import assert from "node:assert/strict";
import { TrainConfigSchema } from "../../core/config.ts";
import { DuafMat } from "../../core/models/duaf/duafmat.ts";
import type { SequenceBatch } from "../../core/models/batch.ts";
import type { ItemSide } from "../../core/models/item_side.ts";
import { Rng } from "../../core/random.ts";
import { compareClose } from "../golden.ts";

export const ITEMS = 30;

/** A one-layer, 8-wide transformer over ITEMS items, dropout off, CE loss. */
export const TINY_ENCODER = {
  numItems: ITEMS,
  maxLen: 5,
  layers: 1,
  heads: 2,
  hidden: 8,
  inner: 16,
  hiddenDropout: 0,
  attnDropout: 0,
  layerNormEps: 1e-12,
  initStd: 0.02,
  loss: "ce" as const,
};

/** Generated content features: text for every item, images for ~60% of them. */
export function itemSide(rng: Rng, withImage: boolean): ItemSide {
  const feat = (dim: number, present: (i: number) => boolean) => {
    const data = new Float32Array((ITEMS + 1) * dim);
    const mask = new Uint8Array(ITEMS + 1);
    for (let i = 1; i <= ITEMS; i++) {
      if (!present(i)) continue;
      mask[i] = 1;
      for (let c = 0; c < dim; c++) data[i * dim + c] = rng.normal();
    }
    return { dim, data, mask };
  };
  return {
    numItems: ITEMS,
    text: feat(6, () => true),
    image: withImage ? feat(5, () => rng.uniform() < 0.6) : null,
    itemCategory: Int32Array.from({ length: ITEMS + 1 }, (_, i) => (i === 0 ? 0 : 1 + (i % 3))),
    numCategories: 4,
  };
}

/** Ragged histories of lengths 2..len (cycling by row) over items 1..numItems, with timestamps. */
export function batch(rng: Rng, size = 6, len = 5, numItems = ITEMS): SequenceBatch {
  const items = new Int32Array(size * len);
  const times = new Float32Array(size * len);
  const lengths = new Int32Array(size);
  for (let r = 0; r < size; r++) {
    lengths[r] = 2 + (r % (len - 1));
    let t = 10 * rng.uniform();
    for (let i = 0; i < lengths[r]; i++) {
      items[r * len + i] = 1 + rng.int(numItems);
      t += rng.uniform() < 0.3 ? 0 : 5 * rng.uniform();
      times[r * len + i] = t;
    }
  }
  return {
    size,
    len,
    items,
    times,
    lengths,
    users: Int32Array.from({ length: size }, (_, i) => i),
    targets: Int32Array.from({ length: size }, () => 1 + rng.int(numItems)),
    negatives: Int32Array.from({ length: size }, () => 1 + rng.int(numItems)),
  };
}

export function model(
  overrides: Record<string, unknown>,
  items: ItemSide,
  loss: "ce" | "bce" = "ce",
  shared: Record<string, unknown> = {},
) {
  const cfg = TrainConfigSchema.parse({
    model: "duafmat",
    hidden: 8,
    inner: 16,
    layers: 1,
    heads: 2,
    hiddenDropout: 0,
    attnDropout: 0,
    loss,
    duafmat: {
      timeDim: 4,
      noiseDim: 3,
      experts: 2,
      expertHidden: 8,
      categoryDim: 3,
      criticHidden: 6,
      vsclCandidates: 4,
      ...overrides,
    },
    ...shared,
  });
  return new DuafMat(
    { ...cfg, numItems: ITEMS, maxLen: 8, loss, duaf: cfg.duafmat },
    items,
    new Rng(3),
  );
}

/** Rows right-padded to `len` (`fill` after a row's last item); users 0.., every target 1. */
export function rowsBatch(seqs: number[][], len: number, fill = 0): SequenceBatch {
  const items = new Int32Array(seqs.length * len).fill(fill);
  seqs.forEach((s, r) => s.forEach((it, j) => (items[r * len + j] = it)));
  return {
    size: seqs.length,
    len,
    items,
    lengths: Int32Array.from(seqs.map((s) => s.length)),
    times: new Float32Array(seqs.length * len),
    users: Int32Array.from(seqs.map((_, i) => i)),
    targets: Int32Array.from(seqs.map(() => 1)),
  };
}

/**
 * Changing a missing item's stored image row leaves the scores exactly as they were; changing a
 * present item's moves them. Both items sit in a history of a tiny batch and are candidates.
 */
export function assertMissingImageIgnored(
  items: ItemSide,
  scoresOf: (items: ItemSide, b: SequenceBatch) => Float32Array,
): void {
  const image = items.image!;
  const missing = image.mask.findIndex((p, i) => i > 0 && !p);
  const present = image.mask.findIndex((p, i) => i > 0 && p === 1);
  assert.ok(missing > 0 && present > 0);
  const b = batch(new Rng(2));
  b.items[0] = missing;
  b.items[b.len] = present;
  const base = scoresOf(items, b);
  const changed = (row: number) => {
    const data = image.data.slice();
    for (let c = 0; c < image.dim; c++) data[row * image.dim + c] += 3 + c;
    return { ...items, image: { ...image, data } };
  };
  const same = compareClose(scoresOf(changed(missing), b), base, 0, 0);
  assert.equal(same.maxAbsDiff, 0, "changing a missing item's stored image changed scores");
  const moved = compareClose(scoresOf(changed(present), b), base, 1e-6, 0);
  assert.ok(moved.maxAbsDiff > 1e-4, "changing a present item's image left scores unchanged");
}
