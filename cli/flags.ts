/** Flag parsing shared by the commands: node:util parseArgs with one-line UsageErrors. */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { DataError, UsageError } from "../core/errors.ts";

export type Flags = NonNullable<ParseArgsConfig["options"]>;

export function parseFlags<T extends Flags>(
  command: string,
  args: string[],
  options: T,
  positionals = false,
) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: positionals });
  } catch (e) {
    const msg = (e as Error).message.split("\n")[0].replace(/\. To specify a positional.*$/, "");
    throw new UsageError(`${msg} (see duaf ${command} --help)`);
  }
}

/** A command's one positional argument, named `what` in the error when it is missing; no other. */
export function onePositional(command: string, what: string, positionals: string[]): string {
  const value = positionals[0];
  if (!value) throw new UsageError(`${what} is required (see duaf help ${command})`);
  if (positionals.length > 1) {
    throw new UsageError(`unexpected argument '${positionals[1]}' (see duaf help ${command})`);
  }
  return value;
}

/** A non-negative integer flag value, or undefined when the flag was not given. */
export function intFlag(name: string, v: string | undefined, min = 0): number | undefined {
  if (v === undefined) return undefined;
  if (!/^-?\d+$/.test(v.trim()) || Number(v) < min || !Number.isSafeInteger(Number(v))) {
    throw new UsageError(`--${name}: expected an integer >= ${min}, got '${v}'`);
  }
  return Number(v);
}

/** One of the allowed words, or undefined when the flag was not given. */
export function choiceFlag<T extends string>(
  name: string,
  v: string | undefined,
  allowed: readonly T[],
): T | undefined {
  if (v === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(v)) {
    throw new UsageError(`--${name}: expected one of ${allowed.join(", ")}, got '${v}'`);
  }
  return v as T;
}

/** Comma-separated list, empty entries dropped. */
export function listFlag(v: string | undefined): string[] | undefined {
  if (v === undefined) return undefined;
  return v.split(",").map((s) => s.trim()).filter((s) => s !== "");
}

/** A finite number flag value, or undefined when the flag was not given. */
export function numberFlag(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n)) {
    throw new UsageError(`--${name}: expected a number, got '${v}'`);
  }
  return n;
}

/** Writes one JSON value as a line on stdout (the pipeline-facing output). */
export function emitJson(value: unknown): void {
  console.log(JSON.stringify(value));
}

/** Mid-epoch checkpoints of `train` and `sweep`: a hard kill loses at most this much training. */
export const DEFAULT_CHECKPOINT_SECONDS = 300;

/** --checkpoint-every S: seconds >= 0 (0: epoch ends only), default DEFAULT_CHECKPOINT_SECONDS. */
export function checkpointSecondsFlag(v: string | undefined): number {
  const s = numberFlag("checkpoint-every", v) ?? DEFAULT_CHECKPOINT_SECONDS;
  if (s < 0) throw new UsageError(`--checkpoint-every: expected seconds >= 0, got ${s}`);
  return s;
}

/**
 * --time-limit DURATION as seconds: "5400" (seconds), or hours, minutes and seconds with units
 * ("90m", "1h30m", "2h", "45s", "1.5h"). Written here: the npm duration parsers (ms,
 * parse-duration) read one unit per value or a whole prose grammar, and this is one regex.
 */
export function durationFlag(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const s = v.trim();
  const bad = () =>
    new UsageError(`--${name}: expected seconds or a duration like 90m, 1h30m, 45s; got '${v}'`);
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s);
  const m = /^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$/.exec(s);
  if (!m || s === "") throw bad();
  return Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0);
}

/** A --config file: a JSON object of config keys (one-line errors naming the file). */
export async function readConfigFile(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch {
    throw new UsageError(`--config ${path}: cannot read file`);
  }
  try {
    const v = JSON.parse(text);
    if (!v || typeof v !== "object" || Array.isArray(v)) throw new Error();
    return v;
  } catch {
    throw new DataError(path, null, null, "expected a JSON object");
  }
}
