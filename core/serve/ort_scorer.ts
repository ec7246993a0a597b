/**
 * Scoring with an exported graph on onnxruntime-web (`--runtime ort`). The file must come from
 * this run's checkpoint and dataset: its metadata is checked against the run before any
 * scoring, so a stale export (the run was retrained) is an error rather than silent drift.
 */
import { join } from "node:path";
import { DataError, UsageError } from "../errors.ts";
import { checkpointSha256 } from "../export/export_run.ts";
import { META } from "../export/onnx_export.ts";
import { readOnnxModel } from "../export/onnx_graph.ts";
import { createSession, type OrtSession, ortTensor } from "../features/ort.ts";
import type { SequenceBatch } from "../models/batch.ts";
import type { OpenRun } from "../train/run.ts";
import { VERSION } from "../version.ts";
import type { BatchScorer } from "./scorer.ts";

/** Where `--runtime ort` looks when no --onnx is given. */
export function defaultOnnxPath(runDir: string): string {
  return join(runDir, "model.onnx");
}

function toInt64(src: Int32Array): BigInt64Array {
  const out = new BigInt64Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = BigInt(src[i]);
  return out;
}

export class OrtScorer implements BatchScorer {
  readonly runtime = "ort";
  readonly #session: OrtSession;
  readonly #cols: number;
  readonly #maxLen: number;

  private constructor(session: OrtSession, cols: number, maxLen: number) {
    this.#session = session;
    this.#cols = cols;
    this.#maxLen = maxLen;
  }

  /** Opens `path` (default RUN/model.onnx) and checks it belongs to `run`. */
  static async open(run: OpenRun, runDir: string, path?: string): Promise<OrtScorer> {
    const file = path ?? defaultOnnxPath(runDir);
    try {
      await Deno.stat(file);
    } catch {
      throw new UsageError(
        path
          ? `--onnx ${file}: no such file`
          : `${file} not found: run 'duaf export ${runDir}' first, or pass --onnx FILE`,
      );
    }
    const session = await createSession(file);
    try {
      const meta = await readMetadata(file);
      const expect: [string, string, string][] = [
        [META.version, VERSION, "duaf version"],
        [META.model, run.manifest.config.model, "model"],
        [META.dataset, run.manifest.dataset.manifestSha256, "dataset"],
        [META.checkpoint, await checkpointSha256(runDir), "checkpoint"],
      ];
      for (const [key, want, what] of expect) {
        if (meta[key] === undefined) {
          throw new DataError(file, null, null, `not a duaf export (no ${key} metadata)`);
        }
        if (meta[key] !== want) {
          throw new UsageError(
            `${file}: exported from another ${what} than ${runDir} (re-run duaf export)`,
          );
        }
      }
      if (!session.outputNames.includes("scores")) {
        throw new DataError(file, null, null, "has no scores output");
      }
      return new OrtScorer(session, run.dataset.numItems + 1, run.manifest.config.maxLen);
    } catch (e) {
      await session.release();
      throw e;
    }
  }

  async scoreAll(batch: SequenceBatch): Promise<Float32Array> {
    if (batch.len > this.#maxLen) {
      throw new Error(`ort: batch length ${batch.len} exceeds the exported max ${this.#maxLen}`);
    }
    const feeds: Record<string, ReturnType<typeof ortTensor>> = {};
    for (const name of this.#session.inputNames) {
      if (name === "item_seq") {
        feeds[name] = ortTensor("int64", toInt64(batch.items), [batch.size, batch.len]);
      } else if (name === "item_seq_len") {
        feeds[name] = ortTensor("int64", toInt64(batch.lengths), [batch.size]);
      } else if (name === "timestamps") {
        feeds[name] = ortTensor("float32", batch.times, [batch.size, batch.len]);
      } else throw new Error(`ort: the graph has an unknown input ${name}`);
    }
    const out = (await this.#session.run(feeds, ["scores"])).scores;
    if (out.dims.length !== 2 || out.dims[0] !== batch.size || out.dims[1] !== this.#cols) {
      throw new Error(
        `ort: scores came back as [${out.dims}], expected [${batch.size}, ${this.#cols}]`,
      );
    }
    return out.data as Float32Array;
  }

  close(): Promise<void> {
    return this.#session.release();
  }
}

/** The file's metadata_props (onnxruntime-web does not expose them). */
async function readMetadata(file: string): Promise<Record<string, string>> {
  return readOnnxModel(await Deno.readFile(file)).metadata;
}
