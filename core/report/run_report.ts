/**
 * Builds a run's report from its directory: the manifest gives the curves, config and test
 * metrics; the best model, run over the valid split, gives the modality weights. Curves need
 * only the manifest, so a report still renders (with a note) when the model or dataset cannot be
 * opened, for example for a run interrupted in its first epoch.
 */
import { basename, resolve } from "node:path";
import { isUserError } from "../errors.ts";
import { checkOutputFile, writeOutputFile } from "../io/output_guard.ts";
import { type Progress, silentProgress } from "../progress.ts";
import { openRun } from "../train/run.ts";
import { readRunManifest } from "../train/run_dir.ts";
import { REPORT_FILE } from "./html.ts";
import { modalityStats } from "./modality.ts";
import { renderReport, type ReportInput } from "./report.ts";

export interface RunReportOptions {
  /** Dataset location if it moved since training. */
  datasetDir?: string;
  /** Users of the valid split to explain (0 = all). */
  maxUsers?: number;
  progress?: Progress;
  /** Replace `out` even when it is not a report duaf wrote. */
  force?: boolean;
}

export async function collectReport(dir: string, opts: RunReportOptions = {}) {
  const progress = opts.progress ?? silentProgress;
  const manifest = await readRunManifest(dir);
  const input: ReportInput = {
    run: basename(resolve(dir)),
    manifest,
    modality: null,
  };
  let run;
  try {
    run = await openRun(dir, progress, opts.datasetDir);
  } catch (e) {
    if (!isUserError(e)) throw e;
    input.modalityNote = `Modality weights not computed: ${e.message}`;
    progress.log(`report: ${e.message}; writing the curves only`);
    return input;
  }
  const cfg = manifest.config;
  input.modality = modalityStats(run.model, run.dataset, {
    split: "valid",
    batchSize: cfg.evalBatchSize,
    maxLen: cfg.maxLen,
    origin: run.origin,
    maxUsers: opts.maxUsers,
    progress,
  });
  if (!input.modality) input.modalityNote = `Model ${cfg.model} has no modality weights.`;
  return input;
}

/** Writes the report for run `dir` to `out` (atomically); returns what went into it. */
export async function writeRunReport(
  dir: string,
  out: string,
  opts: RunReportOptions = {},
): Promise<ReportInput> {
  const guard = { force: opts.force };
  await checkOutputFile(out, REPORT_FILE, guard);
  const input = await collectReport(dir, opts);
  await writeOutputFile(out, renderReport(input), REPORT_FILE, guard);
  return input;
}
