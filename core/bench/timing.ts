/**
 * Timings of a training run through the Progress seam: when each task (an epoch, an evaluation)
 * started, ticked and finished, so a benchmark times the steps `duaf train` runs, not a copy of
 * them. And the process's peak resident set.
 */
import type { Progress, ProgressTask } from "../progress.ts";

export class TimingProgress implements Progress {
  /** Each task's start and tick times (ms), by label ("epoch 1", "eval valid", ...). */
  readonly ticks = new Map<string, number[]>();
  /** Each finished task's seconds. */
  readonly durations = new Map<string, number>();

  constructor(private readonly logTo: (message: string) => void = () => {}) {}

  log(message: string): void {
    this.logTo(message);
  }

  start(label: string): ProgressTask {
    const t0 = performance.now();
    const ticks = [t0];
    this.ticks.set(label, ticks);
    return {
      tick: () => {
        ticks.push(performance.now());
      },
      done: () => {
        const s = (performance.now() - t0) / 1000;
        this.durations.set(label, s);
        this.logTo(`${label}: ${s.toFixed(1)} s`);
      },
    };
  }

  /** Seconds between a task's consecutive ticks (an epoch's steps). */
  intervals(label: string): number[] {
    const t = this.ticks.get(label) ?? [];
    return t.slice(1).map((x, i) => (x - t[i]) / 1000);
  }
}

/** Peak resident set of this process (VmHWM) in MiB; NaN where /proc is not there. */
export function peakRssMib(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}
