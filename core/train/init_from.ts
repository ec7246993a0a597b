/**
 * `train --init-from RUN`: start a new run from another run's best parameters, for any model.
 * Parameters whose names and shapes match are copied; the rest (item ID tables sized by another
 * catalog, modules the other model lacks) keep their fresh initialisation. Text-consuming
 * parameters sized by a different text feature width are an error, not a silent skip: the
 * transfer would otherwise drop exactly what it is for.
 */
import { join } from "node:path";
import type { Dataset } from "../data/dataset.ts";
import { type DatasetIdentity, sameDataset } from "../data/identity.ts";
import { UsageError } from "../errors.ts";
import { readSafetensors } from "../io/safetensors.ts";
import type { SequentialModel } from "../models/model.ts";
import { assign } from "../tensor.ts";
import { readRunManifest, type RunManifest } from "./run_dir.ts";

export interface InitFromResult {
  run: string;
  loaded: string[];
  fresh: string[];
  /** Lines for stderr: what was loaded and what stayed fresh, and notices. */
  lines: string[];
}

/** The text features a run was trained with (recorded in its manifest). */
export function textFeaturesOf(ds: Dataset): { dim: number; source: string } | null {
  return ds.text ? { dim: ds.text.dim, source: ds.text.source } : null;
}

/** A dataset's text features from its manifest (runs from before `textFeatures` was recorded). */
async function datasetText(dir: string): Promise<{ dim: number; source: string } | null> {
  try {
    const m = JSON.parse(await Deno.readTextFile(join(dir, "manifest.json")));
    const t = m?.modalities?.text;
    return typeof t?.dim === "number" ? { dim: t.dim, source: String(t.source) } : null;
  } catch {
    return null;
  }
}

/** Names grouped by their first component when the whole group shares the fate. */
function summarise(names: string[], all: string[]): string {
  const head = (n: string) => n.split(".")[0];
  const groups = new Map<string, string[]>();
  for (const n of names) groups.set(head(n), [...(groups.get(head(n)) ?? []), n]);
  const parts: string[] = [];
  for (const [h, members] of groups) {
    const total = all.filter((n) => head(n) === h).length;
    if (members.length === total && (total > 1 || members[0] !== h)) {
      parts.push(total === 1 ? members[0] : `${h}.* (${total})`);
    } else parts.push(...members);
  }
  return parts.join(", ");
}

export async function initFromRun(
  dir: string,
  model: SequentialModel,
  ds: Dataset,
  dataset: DatasetIdentity,
): Promise<InitFromResult> {
  const source: RunManifest = await readRunManifest(dir);
  const path = join(dir, "model.safetensors");
  let file;
  try {
    file = await readSafetensors(path);
  } catch {
    throw new UsageError(`--init-from ${dir}: no model.safetensors (no finished epoch)`);
  }
  const srcText = source.textFeatures ?? await datasetText(source.dataset.dir);
  const dstText = textFeaturesOf(ds);
  const named = model.namedParameters();
  const all = named.map(([n]) => n);
  const loaded: string[] = [];
  const fresh: string[] = [];
  const why: string[] = [];
  for (const [name, t] of named) {
    const s = file.tensors.get(name);
    if (!s || s.dtype !== "F32") {
      fresh.push(name);
      continue;
    }
    const same = s.shape.length === t.shape.length && s.shape.every((d, k) => d === t.shape[k]);
    if (!same) {
      // An axis that is the text width in both runs: the adaptor reads text features.
      const textAxis = srcText && dstText && srcText.dim !== dstText.dim &&
        s.shape.some((d, k) => d === srcText.dim && t.shape[k] === dstText.dim);
      if (textAxis) {
        throw new UsageError(
          `--init-from ${dir}: the pre-training run's text features are ${srcText.dim}-d, this ` +
            `dataset's are ${dstText.dim}-d (${name}); preprocess both with the same text ` +
            `features (a shared text modality, e.g. --text-features glove, or the same --text-dim)`,
        );
      }
      fresh.push(name);
      why.push(`${name} [${s.shape}] there, [${t.shape}] here`);
      continue;
    }
    assign(t, s.data as Float32Array);
    loaded.push(name);
  }
  if (loaded.length === 0) {
    throw new UsageError(
      `--init-from ${dir}: none of this ${model.kind} model's parameters matches the run's ` +
        `(a ${source.config.model} run) by name and shape`,
    );
  }
  const lines = [
    `init from ${dir}: loaded ${loaded.length} of ${all.length} tensors: ` +
    `${summarise(loaded, all)}; fresh: ${fresh.length ? summarise(fresh, all) : "none"}` +
    (why.length ? ` (shape differs: ${why.join("; ")})` : ""),
  ];
  const crossDataset = !sameDataset(source.dataset, dataset);
  if (crossDataset && [srcText?.source, dstText?.source].includes("tfidf-svd")) {
    lines.push(
      "note: TF-IDF+SVD text features are fit per dataset, so their dimensions mean different " +
        "things across datasets; transfer needs a shared text space (--text-features glove)",
    );
  }
  return { run: dir, loaded, fresh, lines };
}
