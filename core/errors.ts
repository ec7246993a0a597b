/**
 * Errors a user can act on. The CLI prints `message` as one line and exits with `exitCode`;
 * anything else that escapes is a bug and gets a stack trace.
 */

/** Bad input data: names the file, the 1-based line (when there is one) and the field. */
export class DataError extends Error {
  readonly exitCode = 2;
  constructor(
    readonly file: string,
    readonly line: number | null,
    readonly field: string | null,
    readonly problem: string,
  ) {
    super(
      `${file}${line !== null ? `:${line}` : ""}: ${field !== null ? `${field}: ` : ""}${problem}`,
    );
    this.name = "DataError";
  }
}

/** Bad usage or configuration (unknown flag, invalid config value, missing run directory). */
export class UsageError extends Error {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** A check the user asked for did not pass (for example `eval --expect`). */
export class CheckFailed extends Error {
  readonly exitCode = 1;
  constructor(message: string) {
    super(message);
    this.name = "CheckFailed";
  }
}

/** Binary units for messages: "1.3 GiB". */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}

/**
 * A resource ran out: memory of a backend (the wasm arena, the GPU, the host) or disk space.
 * Says what ran out, how much was asked, and what to change; layers that know the configuration
 * (training, evaluation) replace the advice with a specific one through `withAdvice`.
 */
export class ResourceError extends Error {
  readonly exitCode = 2;
  constructor(
    /** What ran out, e.g. "wasm arena", "GPU memory", "disk space". */
    readonly resource: string,
    /** Bytes of the request that failed, when known. */
    readonly requested: number | null,
    /** The limit that was hit, when known (e.g. "limit 4.0 GiB, 2.1 GiB in use"). */
    readonly limit: string | null,
    readonly advice: string,
  ) {
    super(
      `out of ${resource}${requested !== null ? ` allocating ${formatBytes(requested)}` : ""}${
        limit ? ` (${limit})` : ""
      }; ${advice}`,
    );
    this.name = "ResourceError";
  }

  /** The same error with other advice, keeping the stack of where it ran out (DUAF_DEBUG). */
  withAdvice(advice: string): ResourceError {
    const e = new ResourceError(this.resource, this.requested, this.limit, advice);
    const frames = this.stack?.split("\n").filter((l) => /^\s+at /.test(l)) ?? [];
    e.stack = [`${e.name}: ${e.message}`, ...frames].join("\n");
    return e;
  }
}

export type UserError = DataError | UsageError | CheckFailed | ResourceError;

export function isUserError(e: unknown): e is UserError {
  return e instanceof DataError || e instanceof UsageError || e instanceof CheckFailed ||
    e instanceof ResourceError;
}

/** The OS error for a full disk or quota, as Deno reports it. */
export function isDiskFull(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return code === "ENOSPC" || code === "EDQUOT" ||
    /No space left on device|Disk quota exceeded|os error (28|122)\b/.test(String(e));
}
