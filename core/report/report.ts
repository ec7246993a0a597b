/**
 * The run report: one self-contained HTML page (inline CSS and SVG, no script, nothing fetched)
 * with the training curves, the config, the test metrics and, for models with modality fusion
 * weights, how those weights spread over sequence positions and time gaps.
 */
import type { EpochRecord } from "../train/trainer.ts";
import type { RunManifest } from "../train/run_dir.ts";
import { type Cell, escapeHtml, formatNumber, page, table } from "./html.ts";
import type { ModalityStats } from "./modality.ts";
import { lineChart, stackedBarChart, WIDE } from "./svg.ts";

export interface ReportInput {
  /** The run as the user named it (shown in the title). */
  run: string;
  manifest: RunManifest;
  modality: ModalityStats | null;
  /** Why there are no modality weights, shown instead of that section's charts. */
  modalityNote?: string;
}

const FAMILY_ORDER = ["ndcg", "mrr", "hit", "recall"];

/** Metric names grouped by family ("ndcg@5", "ndcg@10" -> ndcg: [5, 10]), in a stable order. */
export function metricFamilies(names: Iterable<string>): Map<string, number[]> {
  const fam = new Map<string, number[]>();
  for (const name of names) {
    const [f, k] = name.split("@");
    if (!fam.has(f)) fam.set(f, []);
    if (k !== undefined) fam.get(f)!.push(Number(k));
  }
  for (const ks of fam.values()) ks.sort((a, b) => a - b);
  const rank = (f: string) => FAMILY_ORDER.indexOf(f) === -1 ? 99 : FAMILY_ORDER.indexOf(f);
  return new Map([...fam].sort(([a], [b]) => rank(a) - rank(b) || a.localeCompare(b)));
}

function history(m: RunManifest): EpochRecord[] {
  return m.history as EpochRecord[];
}

function lossCharts(m: RunManifest): string[] {
  const h = history(m);
  const parts = [...new Set(h.flatMap((r) => Object.keys(r.loss ?? {})))];
  const mark = m.bestEpoch > 0 ? { x: m.bestEpoch, label: "best" } : undefined;
  const charts = parts.map((p) =>
    lineChart({
      title: `training loss: ${p}`,
      xLabel: "epoch",
      yLabel: p,
      series: [{ name: p, points: h.map((r) => [r.epoch, r.loss?.[p] ?? NaN]) }],
      mark,
    })
  );
  if (h.some((r) => r.steps > 0)) {
    charts.push(lineChart({
      title: "training time per epoch",
      xLabel: "epoch",
      yLabel: "seconds",
      series: [{ name: "seconds", points: h.map((r) => [r.epoch, r.seconds]) }],
    }));
  }
  return charts;
}

function validCharts(m: RunManifest): string[] {
  const h = history(m);
  const names = new Set(h.flatMap((r) => Object.keys(r.valid ?? {})));
  const mark = m.bestEpoch > 0 ? { x: m.bestEpoch, label: "best" } : undefined;
  return [...metricFamilies(names)].map(([fam, ks]) =>
    lineChart({
      title: `valid ${fam}`,
      xLabel: "epoch",
      yLabel: fam,
      series: ks.map((k) => ({
        name: `${fam}@${k}`,
        points: h.map((r) => [r.epoch, r.valid?.[`${fam}@${k}`] ?? NaN] as [number, number]),
      })),
      mark,
    })
  );
}

function metricsTable(metrics: Record<string, number>): string {
  const fams = metricFamilies(Object.keys(metrics));
  const ks = [...new Set([...fams.values()].flat())].sort((a, b) => a - b);
  const rows: Cell[][] = [...fams].map((
    [f, _],
  ) => [f, ...ks.map((k) => metrics[`${f}@${k}`] ?? null)]);
  return table(["metric", ...ks.map((k) => `@${k}`)], rows);
}

function configRows(m: RunManifest): Cell[][] {
  const rows: Cell[][] = [];
  const show = (v: unknown): string => Array.isArray(v) ? v.join(", ") : String(v);
  for (const [k, v] of Object.entries(m.config)) {
    if (k === "duafmat") {
      // The DuAF-MAT block only means something for that model.
      if (m.config.model !== "duafmat") continue;
      for (const [dk, dv] of Object.entries(v as Record<string, unknown>)) {
        rows.push([`duafmat.${dk}`, show(dv)]);
      }
    } else rows.push([k, show(v)]);
  }
  return rows;
}

function summaryRows(input: ReportInput): Cell[][] {
  const m = input.manifest;
  const h = history(m);
  const trainSeconds = h.reduce((s, r) => s + (r.seconds ?? 0), 0);
  return [
    ["model", m.config.model],
    ["status", m.stopped ? `${m.status} (${m.stopped})` : m.status],
    ["epochs run", h.length],
    ["best epoch", m.bestEpoch > 0 ? m.bestEpoch : null],
    [`best valid ${m.config.metric}`, m.bestMetric],
    ["backend", m.backend],
    ["training seconds", Number(trainSeconds.toFixed(1))],
    ["total seconds", Number(m.seconds.toFixed(1))],
    ["dataset", m.dataset.dir],
    [
      "initialised from",
      m.initFrom
        ? `${m.initFrom.run} (${m.initFrom.loaded.length} tensors loaded, ` +
          `${m.initFrom.fresh.length} fresh)`
        : "none (trained from scratch)",
    ],
    ["duaf", m.duaf],
  ];
}

function historyTable(m: RunManifest): string {
  const h = history(m);
  const parts = [...new Set(h.flatMap((r) => Object.keys(r.loss ?? {})))];
  const valid = [...new Set(h.flatMap((r) => Object.keys(r.valid ?? {})))]
    .filter((k) => k.endsWith("@10") || k === m.config.metric);
  const rows = h.map((r): Cell[] => [
    String(r.epoch),
    r.seconds,
    ...parts.map((p) => r.loss?.[p] ?? null),
    ...valid.map((k) => r.valid?.[k] ?? null),
  ]);
  return table(["epoch", "seconds", ...parts.map((p) => `loss ${p}`), ...valid], rows);
}

function modalitySection(input: ReportInput): string[] {
  const s = input.modality;
  const out = [`<h2>Modality fusion weights</h2>`];
  if (!s) {
    out.push(
      `<p class="note">${
        escapeHtml(
          input.modalityNote ??
            `Model ${input.manifest.config.model} has no modality weights to show.`,
        )
      }</p>`,
    );
    return out;
  }
  const lastUsed = s.byPosition.counts.findLastIndex((c) => c > 0);
  const posCats = s.byPosition.labels.slice(0, lastUsed + 1);
  out.push(
    `<p class="sub">Mean fusion weight of each modality on the ${s.split} split ` +
      `(${s.users} sequences, ${s.steps} history steps). Overall: ` +
      s.modalities.map((m, k) => `${escapeHtml(m)} ${formatNumber(s.overall[k])}`).join(", ") +
      `. Position 0 is the most recent item. The first visible item of each sequence has no ` +
      `previous item and is left out of the time-gap view.</p>`,
    stackedBarChart({
      title: "weight by position from the end of the sequence",
      xLabel: "position from the end (0 = most recent)",
      categories: posCats,
      labelEvery: posCats.length > 20 ? 5 : 1,
      stacks: s.modalities,
      values: s.byPosition.mean.slice(0, lastUsed + 1),
      counts: s.byPosition.counts.slice(0, lastUsed + 1),
      width: WIDE,
    }),
  );
  const rows = (t: typeof s.byGap, n: number) =>
    t.labels.slice(0, n).map((label, b): Cell[] => [
      label,
      t.counts[b],
      ...s.modalities.map((_, k) =>
        t.counts[b] ? `${formatNumber(t.mean[b][k])} ± ${formatNumber(t.std[b][k])}` : null
      ),
    ]);
  const head = (first: string) => [first, "steps", ...s.modalities.map((m) => `${m} (mean ± sd)`)];
  out.push(
    `<div class="cols">`,
    `<div class="half">${
      stackedBarChart({
        title: "weight by time gap",
        xLabel: "Δt to the previous item, days (log-spaced buckets)",
        categories: s.byGap.labels,
        stacks: s.modalities,
        values: s.byGap.mean,
        counts: s.byGap.counts,
      })
    }</div>`,
    `<div>${table(head("Δt"), rows(s.byGap, s.byGap.labels.length))}</div>`,
    `</div>`,
    ...(s.byImage
      ? [
        `<h3>Real against generated images</h3>`,
        `<p class="sub">Steps whose item has a real image against steps whose image MAT-MoE ` +
        `generated (missing, or hidden from training by duafmat.hideImages). The paper expects ` +
        `a lower image weight where the image is generated.</p>`,
        table(head("image"), rows(s.byImage, s.byImage.labels.length)),
      ]
      : []),
    `<details><summary>By position from the end (table)</summary>`,
    table(head("position from the end"), rows(s.byPosition, lastUsed + 1)),
    `</details>`,
  );
  return out;
}

export function renderReport(input: ReportInput): string {
  const m = input.manifest;
  const h = history(m);
  const body: string[] = [
    `<h1>duaf run report: ${escapeHtml(input.run)}</h1>`,
    `<p class="sub">${escapeHtml(m.config.model)} on ${escapeHtml(m.dataset.dir)}, ` +
    `${h.length} epoch${h.length === 1 ? "" : "s"}, backend ${escapeHtml(m.backend)}</p>`,
    `<div class="cols">`,
    `<div><h2>Run</h2>${table([], summaryRows(input))}</div>`,
    `<div><h2>Test metrics</h2>${
      m.test
        ? metricsTable(m.test) +
          `<p class="note">Full ranking over all items, best epoch's parameters.</p>`
        : `<p class="note">No test metrics: the run has not finished.</p>`
    }</div>`,
    `</div>`,
    `<h2>Training curves</h2>`,
  ];
  const losses = lossCharts(m);
  body.push(
    losses.length
      ? `<div class="charts">\n${losses.join("\n")}\n</div>`
      : `<p class="note">No training loss: ${
        h.length ? "the model is fitted from counts, not trained" : "no epoch has finished yet"
      }.</p>`,
  );
  const valid = validCharts(m);
  body.push(`<h2>Validation metrics per epoch</h2>`);
  body.push(
    valid.length
      ? `<div class="charts">\n${valid.join("\n")}\n</div>`
      : `<p class="note">No validation yet.</p>`,
  );
  body.push(...modalitySection(input));
  if (h.length) {
    body.push(
      `<h2>Per-epoch history</h2>`,
      `<details${h.length <= 20 ? " open" : ""}><summary>${h.length} epochs</summary>`,
      historyTable(m),
      `</details>`,
    );
  }
  body.push(`<h2>Config</h2>`, table(["key", "value"], configRows(m)));
  const data = JSON.stringify({
    run: input.run,
    model: m.config.model,
    config: m.config,
    history: h,
    bestEpoch: m.bestEpoch,
    test: m.test,
    modality: input.modality,
  });
  return page(`duaf report: ${input.run}`, body, data);
}
