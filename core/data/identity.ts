/**
 * What makes two dataset directories the same dataset, for runs and sweeps that check it.
 *
 * `manifestSha256` hashes manifest.json, which also records where the raw files were read from
 * and every preprocess option; `contentSha256` hashes only the data files, so the same data built
 * on another machine, from another path or by a later duaf that records more in its manifest, is
 * recognised as the same. Runs and sweeps record both and compare the content hash when the
 * record has one (records written before it existed compare the manifest hash).
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { DATASET_ARTIFACT, MANIFEST_FILE } from "./artifact.ts";
import { z } from "zod";

export interface DatasetIdentity {
  manifestSha256: string;
  contentSha256: string;
}

export const DatasetRecordSchema = z.object({
  dir: z.string(),
  manifestSha256: z.string(),
  contentSha256: z.string().optional(),
});

/** A run's or sweep's record of its dataset: where it was and what it was. */
export type DatasetRecord = z.infer<typeof DatasetRecordSchema>;

async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  const file = await Deno.open(path);
  // The stream closes the file when it ends or fails.
  for await (const chunk of file.readable) hash.update(chunk);
  return hash.digest("hex");
}

/** SHA-256 of the dataset's manifest.json (also what ONNX exports record as their dataset). */
export function datasetManifestSha256(dir: string): Promise<string> {
  return sha256File(join(dir, MANIFEST_FILE));
}

/**
 * Both hashes of a dataset directory. The content hash covers every data file the artifact
 * defines, by name, in a fixed order; a missing one is part of the identity too.
 */
export async function datasetIdentity(dir: string): Promise<DatasetIdentity> {
  const manifestSha256 = await datasetManifestSha256(dir);
  const content = createHash("sha256");
  for (const name of DATASET_ARTIFACT.entries) {
    if (name === MANIFEST_FILE) continue;
    let digest = "absent";
    try {
      digest = await sha256File(join(dir, name));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    content.update(`${name}\0${digest}\n`);
  }
  return { manifestSha256, contentSha256: content.digest("hex") };
}

/** The record a run or sweep writes for the dataset at `dir`. */
export function datasetRecord(dir: string, id: DatasetIdentity): DatasetRecord {
  return { dir, manifestSha256: id.manifestSha256, contentSha256: id.contentSha256 };
}

/** Whether `current` is the dataset `recorded` describes (by content where both know it). */
export function sameDataset(
  recorded: DatasetRecord,
  current: DatasetRecord | DatasetIdentity,
): boolean {
  return recorded.contentSha256 !== undefined && current.contentSha256 !== undefined
    ? recorded.contentSha256 === current.contentSha256
    : recorded.manifestSha256 === current.manifestSha256;
}
