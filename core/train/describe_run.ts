/**
 * A run directory in a few lines (`duaf inspect RUN`): what was trained on what, how far it got,
 * its best epoch's validation metrics and its test metrics, from the manifest alone.
 */
import { resolveConfig } from "../config.ts";
import type { RunManifest } from "./run_dir.ts";

export interface RunSummary {
  run: string;
  model: string;
  status: RunManifest["status"];
  stopped: string | null;
  epochs: number;
  bestEpoch: number;
  metric: string;
  /** The best epoch's validation metrics. */
  valid: Record<string, number> | null;
  test: Record<string, number> | null;
  backend: string;
  dataset: { dir: string; contentSha256?: string };
  seconds: number;
  /** Where --resume would continue (unfinished runs). */
  checkpoint: { epoch: number; step: number } | null;
  initFrom: string | null;
  /** The config keys that differ from the defaults, dotted as `--set` takes them. */
  config: Record<string, unknown>;
}

export function describeRun(dir: string, m: RunManifest): RunSummary {
  const config = differences(
    m.config as Record<string, unknown>,
    resolveConfig(null, [], "defaults") as Record<string, unknown>,
  );
  const best = m.history.find((h) => h?.epoch === m.bestEpoch) as
    | { valid?: Record<string, number> }
    | undefined;
  return {
    run: dir,
    model: m.config.model,
    status: m.status,
    stopped: m.stopped,
    epochs: m.history.length,
    bestEpoch: m.bestEpoch,
    metric: m.config.metric,
    valid: best?.valid ?? null,
    test: m.test,
    backend: m.backend,
    dataset: { dir: m.dataset.dir, contentSha256: m.dataset.contentSha256 },
    seconds: m.seconds,
    checkpoint: m.status === "finished" ? null : m.checkpoint ?? null,
    initFrom: m.initFrom?.run ?? null,
    config,
  };
}

/** Keys of `config` whose values differ from `defaults`, nested ones dotted (duafmat.experts). */
function differences(
  config: Record<string, unknown>,
  defaults: Record<string, unknown>,
  prefix = "",
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(config)) {
    const d = defaults[k];
    const nested = (x: unknown) => x !== null && typeof x === "object" && !Array.isArray(x);
    if (nested(v) && nested(d)) {
      Object.assign(
        out,
        differences(v as Record<string, unknown>, d as Record<string, unknown>, `${prefix}${k}.`),
      );
    } else if (JSON.stringify(v) !== JSON.stringify(d)) out[`${prefix}${k}`] = v;
  }
  return out;
}

/** The @10 metrics (all of them when there is no @10), four decimals. */
function metricsLine(metrics: Record<string, number> | null): string {
  if (!metrics) return "-";
  const at10 = Object.entries(metrics).filter(([k]) => k.endsWith("@10"));
  return (at10.length ? at10 : Object.entries(metrics))
    .map(([k, v]) => `${k} ${v.toFixed(4)}`).join("  ");
}

export function formatRunSummary(s: RunSummary): string {
  const state = s.status === "finished"
    ? `finished (${s.stopped}), ${s.epochs} epochs, best epoch ${s.bestEpoch}`
    : `${s.status}, ${s.epochs} epochs done` +
      (s.checkpoint
        ? `; resumes at epoch ${s.checkpoint.epoch + 1} step ${s.checkpoint.step}`
        : "");
  const set = Object.entries(s.config).map(([k, v]) =>
    `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`
  );
  const lines = [
    `run       ${s.run}`,
    `model     ${s.model}`,
    `status    ${state}`,
    `valid     ${metricsLine(s.valid)}${s.valid ? ` (epoch ${s.bestEpoch})` : ""}`,
    `test      ${metricsLine(s.test)}`,
    `backend   ${s.backend}, ${s.seconds.toFixed(1)} s`,
    `dataset   ${s.dataset.dir}` +
    (s.dataset.contentSha256 ? ` (data ${s.dataset.contentSha256.slice(0, 12)})` : ""),
    `config    ${set.length ? set.join(" ") : "(defaults)"}`,
  ];
  if (s.initFrom) lines.push(`init from ${s.initFrom}`);
  return lines.join("\n");
}
