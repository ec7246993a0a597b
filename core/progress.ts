/**
 * Progress reporting seam: core code reports long steps through this interface and never writes
 * to the terminal itself. The CLI supplies a stderr implementation; library users may pass their
 * own or none.
 */
export interface ProgressTask {
  /** Advance by n units (default 1) and optionally update a status text. */
  tick(n?: number, status?: string): void;
  /** Finish the task; `summary` is shown once. */
  done(summary?: string): void;
}

export interface Progress {
  /** Start a task of `total` units (null when the total is unknown, e.g. a streamed file). */
  start(label: string, total: number | null, unit?: string): ProgressTask;
  /** One log line (stderr in the CLI). */
  log(message: string): void;
}

const silentTask: ProgressTask = { tick() {}, done() {} };

/** Progress that reports nothing. */
export const silentProgress: Progress = {
  start: () => silentTask,
  log() {},
};
