/**
 * Stopping long commands (train, sweep) without losing work. SIGINT (Ctrl-C), SIGTERM (what
 * batch schedulers, container runtimes and CI timeouts send before a kill) and an optional time
 * limit each ask the run to stop after its step and save a checkpoint; a second signal exits at
 * once. The exit code says why: 130 SIGINT, 143 SIGTERM (128 + the signal, as shells report
 * them), 75 the time limit (EX_TEMPFAIL: not finished, run the same command again to continue).
 */
import type { Progress } from "../core/progress.ts";

export type StopReason = "SIGINT" | "SIGTERM" | "time-limit";

export const EXIT_CODE: Record<StopReason, number> = {
  SIGINT: 130,
  SIGTERM: 143,
  "time-limit": 75,
};

export interface Interrupt {
  /** Polled by the trainer between steps and by a sweep between runs. */
  shouldStop(): boolean;
  /** What asked to stop, or null while nothing has. */
  reason(): StopReason | null;
  /** Removes the signal listeners. */
  dispose(): void;
}

export interface StopOptions {
  /** Seconds from now after which the run stops as if interrupted (none: no limit). */
  timeLimitSeconds?: number;
  /** Clock in ms (tests). */
  now?: () => number;
}

export function stopOnSignals(progress: Progress, opts: StopOptions = {}): Interrupt {
  const now = opts.now ?? (() => performance.now());
  const deadline = opts.timeLimitSeconds === undefined
    ? Infinity
    : now() + opts.timeLimitSeconds * 1000;
  let reason: StopReason | null = null;
  const listeners: [Deno.Signal, () => void][] = [];
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    const onSignal = () => {
      if (reason !== null && reason !== "time-limit") Deno.exit(EXIT_CODE[signal]);
      reason = signal;
      progress.log(
        `${signal}: finishing this step and saving a checkpoint (${signal} again to abort)`,
      );
    };
    try {
      Deno.addSignalListener(signal, onSignal);
      listeners.push([signal, onSignal]);
    } catch {
      // Windows has no SIGTERM to listen for; SIGINT (Ctrl-C) still works there.
    }
  }
  return {
    shouldStop() {
      if (reason === null && now() >= deadline) {
        reason = "time-limit";
        progress.log("time limit reached: finishing this step and saving a checkpoint");
      }
      return reason !== null;
    },
    reason: () => reason,
    dispose: () => listeners.forEach(([s, f]) => Deno.removeSignalListener(s, f)),
  };
}
