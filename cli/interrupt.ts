/**
 * Ctrl-C for long commands (train, sweep): the first SIGINT asks the run to stop after its step
 * and save a checkpoint; a second one exits at once with 130.
 */
import type { Progress } from "../core/progress.ts";

export interface Interrupt {
  /** Polled by the trainer between steps. */
  shouldStop(): boolean;
  /** Removes the signal listener. */
  dispose(): void;
}

export function stopOnSigint(progress: Progress): Interrupt {
  let requested = false;
  const onSigint = () => {
    if (requested) Deno.exit(130);
    requested = true;
    progress.log("interrupt: finishing this step and saving a checkpoint (Ctrl-C again to abort)");
  };
  Deno.addSignalListener("SIGINT", onSigint);
  return {
    shouldStop: () => requested,
    dispose: () => Deno.removeSignalListener("SIGINT", onSigint),
  };
}
