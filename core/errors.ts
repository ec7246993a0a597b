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

export type UserError = DataError | UsageError | CheckFailed;

export function isUserError(e: unknown): e is UserError {
  return e instanceof DataError || e instanceof UsageError || e instanceof CheckFailed;
}
