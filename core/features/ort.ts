/**
 * The one place that loads onnxruntime-web and configures it for Deno. Feature encoders, ONNX
 * export checks and serving all create sessions through here.
 *
 * onnxruntime-web runs offline when `env.wasm.wasmPaths` points at the file: URL of its own dist
 * folder (otherwise it would fetch the .wasm from a CDN). Its multi-threaded mode spawns workers
 * from blob: URLs, which Deno refuses, so it runs one thread.
 */
import * as ort from "onnxruntime-web";
import { DataError } from "../errors.ts";

export type OrtSession = ort.InferenceSession;
export type OrtTensor = ort.Tensor;
export type OrtTensorType = "float32" | "int64" | "int32";

let configured = false;

function configure(): void {
  if (configured) return;
  const entry = import.meta.resolve("onnxruntime-web");
  ort.env.wasm.wasmPaths = entry.slice(0, entry.lastIndexOf("/") + 1);
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  ort.env.logLevel = "error";
  configured = true;
}

/**
 * Opens an inference session on the WASM CPU backend from a model file path or model bytes
 * (`file` names them in errors). An unreadable or invalid model file is a DataError naming it.
 */
export async function createSession(
  pathOrBytes: string | Uint8Array,
  file = typeof pathOrBytes === "string" ? pathOrBytes : "<onnx bytes>",
): Promise<OrtSession> {
  configure();
  let bytes: Uint8Array;
  if (typeof pathOrBytes === "string") {
    try {
      bytes = await Deno.readFile(pathOrBytes);
    } catch (e) {
      throw new DataError(file, null, null, `cannot read model: ${(e as Error).message}`);
    }
  } else bytes = pathOrBytes;
  try {
    return await ort.InferenceSession.create(bytes, {
      executionProviders: ["wasm"],
      graphOptimizationLevel: "all",
    });
  } catch (e) {
    const msg = String((e as Error).message ?? e).split("\n")[0];
    throw new DataError(file, null, null, `not a loadable ONNX model: ${msg}`);
  }
}

/** Wraps a typed array as an ORT tensor of the given shape. */
export function ortTensor(
  type: OrtTensorType,
  data: Float32Array | BigInt64Array | Int32Array,
  dims: readonly number[],
): OrtTensor {
  return new ort.Tensor(type, data, dims);
}

/** Static dims of a session input when the model declares them (symbolic dims come back as null). */
export function inputDims(session: OrtSession, name: string): (number | null)[] | null {
  const meta = session.inputMetadata?.find((m) => m.name === name);
  if (!meta || !meta.isTensor) return null;
  return meta.shape.map((d) => typeof d === "number" && d > 0 ? d : null);
}

/**
 * The output to read: `requested` (which must exist), else the first of `preferred` the model
 * has, else its first output.
 */
export function pickOutput(
  session: OrtSession,
  modelPath: string,
  requested: string | undefined,
  preferred: readonly string[],
): string {
  const names = session.outputNames;
  if (requested !== undefined) {
    if (!names.includes(requested)) {
      throw new DataError(
        modelPath,
        null,
        null,
        `has no output "${requested}" (has: ${names.join(", ")})`,
      );
    }
    return requested;
  }
  return preferred.find((n) => names.includes(n)) ?? names[0];
}

/** Runs the session and returns plain float32 outputs with their dims. */
export async function runFloat(
  session: OrtSession,
  feeds: Record<string, OrtTensor>,
): Promise<Map<string, { data: Float32Array; dims: number[] }>> {
  const results = await session.run(feeds);
  const out = new Map<string, { data: Float32Array; dims: number[] }>();
  for (const name of session.outputNames) {
    const t = results[name];
    if (!t) continue;
    const data = t.type === "float32"
      ? (t.data as Float32Array)
      : Float32Array.from(t.data as ArrayLike<number>, Number);
    out.set(name, { data, dims: [...t.dims] });
  }
  return out;
}
