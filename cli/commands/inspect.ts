/** `duaf inspect DATASET`: counts, sequence lengths, time range and modality coverage. */
import type { Command } from "../command.ts";
import { UsageError } from "../../core/errors.ts";
import { loadDataset } from "../../core/data/dataset.ts";
import { type DatasetStats, describeDataset } from "../../core/data/inspect.ts";
import { parseFlags } from "../flags.ts";
import { manifestFormat } from "../../core/io/output_guard.ts";
import { describeRun, formatRunSummary } from "../../core/train/describe_run.ts";
import { readRunManifest, RUN_FORMAT } from "../../core/train/run_dir.ts";
import { statusMarkdown, sweepStatus } from "../../core/sweep/status.ts";
import { SWEEP_FORMAT } from "../../core/sweep/sweep.ts";

const usage = `usage: duaf inspect DATASET|RUN|SWEEP [--json]

A dataset artifact: its users, items, interactions, sequence-length histogram, timestamp range
and modality coverage. A run directory: its model, status (and where --resume would continue),
the best epoch's validation metrics, the test metrics, backend, dataset and the config keys that
differ from the defaults. A sweep: what duaf sweep status prints. --json prints one JSON object.`;

const BAR_WIDTH = 40;

export function formatStats(s: DatasetStats): string {
  const pct = (x: number) => `${(x * 100).toFixed(x < 0.001 ? 4 : 2)}%`;
  const lines = [
    `dataset       ${s.name}`,
    `users         ${s.users}`,
    `items         ${s.items}`,
    `interactions  ${s.interactions}  (density ${pct(s.density)})`,
    `categories    ${s.categories}`,
    `time range    ${s.timestamps.minIso} .. ${s.timestamps.maxIso}`,
    `seq length    min ${s.sequenceLength.min}, median ${s.sequenceLength.median}, ` +
    `mean ${s.sequenceLength.mean.toFixed(2)}, max ${s.sequenceLength.max}`,
  ];
  if (s.usersUnder3 > 0) {
    lines.push(`              ${s.usersUnder3} users have < 3 interactions (no training item)`);
  }
  lines.push("", "sequence-length histogram (users)");
  const most = Math.max(...s.histogram.map((b) => b.users));
  const labelWidth = Math.max(...s.histogram.map((b) => rangeLabel(b).length));
  for (const b of s.histogram) {
    const bar = "#".repeat(Math.round((b.users / most) * BAR_WIDTH));
    lines.push(
      `  ${rangeLabel(b).padStart(labelWidth)}  ${String(b.users).padStart(8)}  ${bar}`.trimEnd(),
    );
  }
  lines.push("", "modalities");
  const names = Object.keys(s.modalities);
  if (names.length === 0) lines.push("  (none)");
  for (const name of names) {
    const m = s.modalities[name];
    lines.push(
      `  ${name.padEnd(6)} dim ${m.dim}, ${m.present}/${s.items} items (${pct(m.coverage)}), ` +
        `source ${m.source}`,
    );
  }
  return lines.join("\n");
}

function rangeLabel(b: { lo: number; hi: number }): string {
  return b.lo === b.hi ? String(b.lo) : `${b.lo}-${b.hi}`;
}

export const inspectCommand: Command = {
  name: "inspect",
  summary: "describe a dataset artifact",
  usage,
  async run(args) {
    const { values, positionals } = parseFlags("inspect", args, {
      json: { type: "boolean" },
    }, true);
    if (positionals.length !== 1) {
      throw new UsageError("expected one DATASET, RUN or SWEEP directory");
    }
    const dir = positionals[0];
    const kind = await manifestFormat(dir);
    if (kind === RUN_FORMAT) {
      const summary = describeRun(dir, await readRunManifest(dir));
      console.log(values.json ? JSON.stringify(summary) : formatRunSummary(summary));
    } else if (kind === SWEEP_FORMAT) {
      const status = await sweepStatus(dir);
      console.log(values.json ? JSON.stringify(status) : statusMarkdown(status));
    } else {
      const stats = describeDataset(await loadDataset(dir));
      console.log(values.json ? JSON.stringify(stats) : formatStats(stats));
    }
    return 0;
  },
};
