/**
 * The CLI's Progress: a cli-progress bar on stderr while a step runs (only when stderr is a
 * terminal), then one plain line per finished step with its time, so logs and CI output stay
 * short and readable.
 */
import cliProgress from "cli-progress";
import process from "node:process";
import type { Progress, ProgressTask } from "../core/progress.ts";

function formatAmount(v: number, unit: string | undefined): string {
  if (unit !== "B") return String(Math.round(v));
  if (v >= 1 << 30) return `${(v / (1 << 30)).toFixed(1)} GiB`;
  if (v >= 1 << 20) return `${(v / (1 << 20)).toFixed(1)} MiB`;
  if (v >= 1 << 10) return `${(v / (1 << 10)).toFixed(0)} KiB`;
  return `${v} B`;
}

const PLAIN_EVERY_MS = 10_000;

export interface StderrProgressOptions {
  /** Print nothing at all (--quiet). */
  quiet?: boolean;
  /** Draw animated bars; default: when stderr is a terminal. */
  bars?: boolean;
}

export class StderrProgress implements Progress {
  readonly #quiet: boolean;
  readonly #bars: boolean;
  readonly #encoder = new TextEncoder();
  readonly #active = new Set<cliProgress.SingleBar>();

  constructor(opts: StderrProgressOptions = {}) {
    this.#quiet = opts.quiet ?? false;
    this.#bars = !this.#quiet && (opts.bars ?? Deno.stderr.isTerminal());
  }

  log(message: string): void {
    if (!this.#quiet) Deno.stderr.writeSync(this.#encoder.encode(message + "\n"));
  }

  start(label: string, total: number | null, unit?: string): ProgressTask {
    const started = performance.now();
    let lastLine = started;
    let value = 0;
    let bar: cliProgress.SingleBar | null = null;
    if (this.#bars && total !== null && total > 0) {
      bar = new cliProgress.SingleBar({
        stream: process.stderr,
        format: `${label} [{bar}] {percentage}% | {value}/{total} | ETA {eta_formatted} {status}`,
        formatValue: (v: number, _o: unknown, type: string) =>
          type === "value" || type === "total" ? formatAmount(v, unit) : String(v),
        hideCursor: false,
        clearOnComplete: true,
        barsize: 30,
      }, cliProgress.Presets.shades_classic);
      bar.start(total, 0, { status: "" });
      this.#active.add(bar);
    }
    return {
      tick: (n = 1, status?: string) => {
        value += n;
        if (bar) {
          bar.update(value, { status: status ?? "" });
          return;
        }
        // Without bars (stderr is not a terminal), a plain line at most every PLAIN_EVERY_MS
        // keeps long steps visible in logs without flooding them.
        const now = performance.now();
        if (!this.#quiet && total !== null && now - lastLine >= PLAIN_EVERY_MS) {
          lastLine = now;
          const eta = value > 0 ? ((now - started) / value) * (total - value) / 1000 : 0;
          this.log(
            `${label}: ${formatAmount(value, unit)}/${formatAmount(total, unit)}, ETA ${
              eta.toFixed(0)
            }s${status ? `, ${status}` : ""}`,
          );
        }
      },
      done: (summary?: string) => {
        if (bar) {
          bar.stop();
          this.#active.delete(bar);
          bar = null;
        }
        const secs = ((performance.now() - started) / 1000).toFixed(1);
        const amount = unit === "B" || unit === "rows" ? ` ${formatAmount(value, unit)}` : "";
        this.log(`${label}:${amount} ${secs}s${summary ? ` (${summary})` : ""}`);
      },
    };
  }

  /** Clears bars of steps that never finished (a failed run), printing nothing for them. */
  close(): void {
    for (const bar of this.#active) bar.stop();
    this.#active.clear();
  }
}
