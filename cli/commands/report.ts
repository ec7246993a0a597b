/** `duaf report`: a self-contained HTML report of a training run. */
import { UsageError } from "../../core/errors.ts";
import { writeRunReport } from "../../core/report/run_report.ts";
import { writeSweepReport } from "../../core/report/sweep_report.ts";
import { readSweepManifest } from "../../core/sweep/sweep.ts";
import { activateBackend } from "../../core/train/run.ts";
import type { Command } from "../command.ts";
import { emitJson, intFlag, onePositional, parseFlags } from "../flags.ts";
import { StderrProgress } from "../progress.ts";

const usage = `usage: duaf report RUN --out FILE.html [options]
       duaf report SWEEP --out FILE.html

Writes one HTML file (inline SVG charts; no scripts, nothing fetched from the network) with the
run's training curves (each loss part and each valid metric per epoch), its config and test
metrics, and, for models with modality fusion weights (duafmat), how those weights spread over
sequence positions and time gaps on the valid split. For a sweep directory (duaf sweep), the
report holds the sweep's table (mean ± sd over seeds, the best configuration and its test
metrics) and one chart of the valid metric per swept key.

options:
  --out FILE           the HTML file to write (required); an existing file is replaced only if
                       it is a duaf report
  --force              replace --out whatever file it is
  --max-users N        explain at most N users of the valid split (default all)
  --dataset DIR        dataset location if it moved (must be the same artifact)
  --backend NAME       auto | cuda | native | wasm | js
  --quiet              no progress output

stdout: one JSON object naming the report and what it holds.`;

export const reportCommand: Command = {
  name: "report",
  summary: "HTML report of a run: curves, config, metrics, modality weights",
  usage,
  async run(args) {
    const { values, positionals } = parseFlags("report", args, {
      out: { type: "string" },
      "max-users": { type: "string" },
      dataset: { type: "string" },
      backend: { type: "string" },
      quiet: { type: "boolean" },
      force: { type: "boolean" },
    }, true);
    const dir = onePositional("report", "RUN", positionals);
    if (!values.out) throw new UsageError("--out FILE is required (see duaf help report)");
    const maxUsers = intFlag("max-users", values["max-users"], 1);
    if (await readSweepManifest(dir)) {
      const input = await writeSweepReport(dir, values.out);
      emitJson({
        report: values.out,
        sweep: dir,
        configs: input.manifest.configs.length,
        runs: input.manifest.runs.length,
        done: input.table.rows.reduce((s, r) => s + r.valid.n, 0),
      });
      return 0;
    }
    const progress = new StderrProgress({ quiet: values.quiet });
    await activateBackend(values.backend);
    const input = await writeRunReport(dir, values.out, {
      datasetDir: values.dataset,
      maxUsers,
      progress,
      force: values.force,
    });
    emitJson({
      report: values.out,
      run: dir,
      model: input.manifest.config.model,
      epochs: input.manifest.history.length,
      modalityWeights: input.modality !== null,
    });
    return 0;
  },
};
