/** Descriptive statistics of a dataset artifact, for `duaf inspect`. */
import type { Dataset } from "./dataset.ts";

export interface HistogramBin {
  /** Inclusive range of sequence lengths. */
  lo: number;
  hi: number;
  users: number;
}

export interface DatasetStats {
  name: string;
  users: number;
  items: number;
  interactions: number;
  categories: number;
  /** interactions / (users * items). */
  density: number;
  sequenceLength: { min: number; median: number; mean: number; max: number };
  /** Power-of-two bins: 1, 2, 3-4, 5-8, 9-16, ... (empty bins past the longest omitted). */
  histogram: HistogramBin[];
  /** Users with fewer than 3 interactions have no training item under leave-one-out. */
  usersUnder3: number;
  timestamps: { min: number; max: number; minIso: string; maxIso: string };
  modalities: { [m: string]: { dim: number; coverage: number; present: number; source: string } };
}

export function describeDataset(ds: Dataset): DatasetStats {
  const lengths = new Int32Array(ds.numUsers);
  for (let u = 0; u < ds.numUsers; u++) lengths[u] = ds.seqOffsets[u + 1] - ds.seqOffsets[u];
  const sorted = lengths.slice().sort();
  const n = sorted.length;
  const median = n % 2 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  const max = sorted[n - 1];
  const histogram: HistogramBin[] = [{ lo: 1, hi: 1, users: 0 }];
  for (let lo = 2; lo <= max; lo = histogram[histogram.length - 1].hi + 1) {
    histogram.push({ lo, hi: lo * 2 - 2 || 2, users: 0 });
  }
  for (const len of sorted) {
    const b = len <= 1 ? 0 : Math.ceil(Math.log2(len));
    histogram[b].users++;
  }
  let usersUnder3 = 0;
  for (const len of sorted) if (len < 3) usersUnder3++;

  const modalities: DatasetStats["modalities"] = {};
  for (const [name, m] of [["text", ds.text], ["image", ds.image]] as const) {
    if (!m) continue;
    let present = 0;
    for (let i = 1; i <= ds.numItems; i++) present += m.mask[i];
    modalities[name] = { dim: m.dim, coverage: present / ds.numItems, present, source: m.source };
  }
  const { min, max: tmax } = ds.manifest.timestamps;
  const iso = (s: number) => new Date(s * 1000).toISOString().replace(".000Z", "Z");
  return {
    name: ds.manifest.name,
    users: ds.numUsers,
    items: ds.numItems,
    interactions: ds.seqItems.length,
    categories: ds.numCategories,
    density: ds.seqItems.length / (ds.numUsers * ds.numItems),
    sequenceLength: { min: sorted[0], median, mean: ds.seqItems.length / n, max },
    histogram,
    usersUnder3,
    timestamps: { min, max: tmax, minIso: iso(min), maxIso: iso(tmax) },
    modalities,
  };
}
