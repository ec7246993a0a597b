/**
 * Inline SVG charts for the HTML report: a line chart (training curves) and a 100%-stacked bar
 * chart (modality weight shares). Plain strings, no script: the report must open offline in any
 * browser, and every data point carries a <title> so its exact value shows on hover.
 */
import { escapeHtml, formatNumber } from "./html.ts";

/** Okabe-Ito colours: distinguishable with the common colour-vision deficiencies. */
export const PALETTE = [
  "#0072B2",
  "#E69F00",
  "#009E73",
  "#CC79A7",
  "#56B4E9",
  "#D55E00",
  "#F0E442",
  "#000000",
];

/** Chart sizes in SVG units; a wide chart gets a wider canvas, not bigger text. */
export const NARROW = 520;
export const WIDE = 1060;
const H = 280;
const M = { left: 58, right: 16, top: 34, bottom: 42 };
const PLOT_H = H - M.top - M.bottom;

/** About `count` round tick values covering [lo, hi] (1, 2 or 5 times a power of ten apart). */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((f) => f * pow).find((s) => s >= raw) ?? 10 * pow;
  const ticks: number[] = [];
  // Tolerances: lo / step is often a whole number plus rounding noise (3.5 / 0.05 = 70.000...1).
  for (let i = Math.ceil(lo / step - 1e-9); i * step <= hi + step * 1e-9; i++) {
    ticks.push(Number((i * step).toPrecision(12)));
  }
  return ticks;
}

/** A y range with some headroom that never collapses to a point. */
function yDomain(values: number[]): [number, number] {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (!(hi > lo)) {
    const pad = Math.abs(lo) * 0.1 || 1;
    return [lo - pad, hi + pad];
  }
  const pad = (hi - lo) * 0.08;
  lo -= pad;
  hi += pad;
  const ticks = niceTicks(lo, hi);
  const step = ticks.length > 1 ? ticks[1] - ticks[0] : hi - lo;
  return [Math.floor(lo / step + 1e-9) * step, Math.ceil(hi / step - 1e-9) * step];
}

function frame(w: number, title: string, body: string[], xLabel: string, yLabel: string): string {
  const plotW = w - M.left - M.right;
  return [
    `<svg class="chart" viewBox="0 0 ${w} ${H}" role="img" aria-label="${escapeHtml(title)}">`,
    `<text class="title" x="${M.left}" y="18">${escapeHtml(title)}</text>`,
    ...body,
    `<text class="axis-label" x="${M.left + plotW / 2}" y="${H - 6}" text-anchor="middle">` +
    `${escapeHtml(xLabel)}</text>`,
    `<text class="axis-label" transform="translate(14 ${M.top + PLOT_H / 2}) rotate(-90)" ` +
    `text-anchor="middle">${escapeHtml(yLabel)}</text>`,
    `</svg>`,
  ].join("\n");
}

function legend(w: number, names: string[]): string[] {
  const out: string[] = [];
  let x = w - M.right;
  // Right-aligned, laid out from the last entry leftwards.
  for (let i = names.length - 1; i >= 0; i--) {
    const w = 16 + names[i].length * 6.5;
    x -= w;
    out.push(
      `<rect x="${x}" y="10" width="10" height="10" fill="${PALETTE[i % PALETTE.length]}"/>` +
        `<text class="legend" x="${x + 13}" y="19">${escapeHtml(names[i])}</text>`,
    );
    x -= 8;
  }
  return out;
}

function yAxis(
  plotW: number,
  lo: number,
  hi: number,
  y: (v: number) => number,
  fmt = formatNumber,
): string[] {
  return niceTicks(lo, hi).map((t) =>
    `<line class="grid" x1="${M.left}" x2="${M.left + plotW}" y1="${y(t)}" y2="${y(t)}"/>` +
    `<text class="tick" x="${M.left - 6}" y="${y(t) + 4}" text-anchor="end">${fmt(t)}</text>`
  );
}

export interface Series {
  name: string;
  /** (x, y) pairs; non-finite y values are left out. */
  points: [number, number][];
}

export interface LineChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** Draws a dashed vertical marker (the best epoch). */
  mark?: { x: number; label: string };
  /** Canvas width (NARROW or WIDE). */
  width?: number;
  /**
   * Categorical x: point x values are indices into these labels, which label the ticks and the
   * points' hover titles (instead of "epoch N").
   */
  xLabels?: string[];
}

/** A line chart over integer x values (epochs, or the indices of `xLabels`). */
export function lineChart(o: LineChartOptions): string {
  const series = o.series.map((s) => ({
    ...s,
    points: s.points.filter(([, v]) => Number.isFinite(v)),
  }));
  const w = o.width ?? NARROW;
  const plotW = w - M.left - M.right;
  const xs = series.flatMap((s) => s.points.map(([x]) => x));
  const ys = series.flatMap((s) => s.points.map(([, y]) => y));
  if (!xs.length) return frame(w, o.title, [noData(plotW)], o.xLabel, o.yLabel);
  // A single epoch gets half an epoch of room on either side instead of an empty range.
  const single = Math.min(...xs) === Math.max(...xs);
  const x0 = o.xLabels ? -0.5 : Math.min(...xs) - (single ? 0.5 : 0);
  const x1 = o.xLabels ? o.xLabels.length - 0.5 : Math.max(...xs) + (single ? 0.5 : 0);
  const [y0, y1] = yDomain(ys);
  const x = (v: number) => round(M.left + ((v - x0) / (x1 - x0 || 1)) * plotW);
  const y = (v: number) => round(M.top + PLOT_H - ((v - y0) / (y1 - y0)) * PLOT_H);
  const body = yAxis(plotW, y0, y1, y);
  const xTicks = o.xLabels
    ? o.xLabels.map((_, i) => i)
    : niceTicks(Math.ceil(x0), Math.floor(x1), 8).filter(Number.isInteger);
  for (const t of xTicks) {
    const label = o.xLabels ? escapeHtml(o.xLabels[t]) : t;
    body.push(
      `<text class="tick" x="${x(t)}" y="${
        M.top + PLOT_H + 16
      }" text-anchor="middle">${label}</text>`,
    );
  }
  body.push(
    `<line class="axis" x1="${M.left}" x2="${M.left + plotW}" y1="${M.top + PLOT_H}" ` +
      `y2="${M.top + PLOT_H}"/>`,
  );
  if (o.mark && o.mark.x >= x0 && o.mark.x <= x1) {
    const mx = x(o.mark.x);
    body.push(
      `<line class="mark" x1="${mx}" x2="${mx}" y1="${M.top}" y2="${M.top + PLOT_H}"/>` +
        // Near the right edge the label goes on the marker's left so it is not clipped.
        (mx > M.left + plotW - 40
          ? `<text class="tick" x="${mx - 4}" y="${M.top + 10}" text-anchor="end">`
          : `<text class="tick" x="${mx + 4}" y="${M.top + 10}">`) +
        `${escapeHtml(o.mark.label)}</text>`,
    );
  }
  // Long runs get smaller dots so the line stays readable; every point keeps its hover title.
  const radius = Math.max(...series.map((s) => s.points.length)) > 60 ? 1.5 : 3;
  series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    const pts = s.points.map(([px, py]) => `${x(px)},${y(py)}`).join(" ");
    body.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts}"/>`);
    for (const [px, py] of s.points) {
      body.push(
        `<circle cx="${x(px)}" cy="${y(py)}" r="${radius}" fill="${color}">` +
          `<title>${escapeHtml(s.name)}, ${
            o.xLabels ? escapeHtml(`${o.xLabel} ${o.xLabels[px]}`) : `epoch ${px}`
          }: ${formatNumber(py)}</title></circle>`,
      );
    }
  });
  if (series.length > 1) body.push(...legend(w, series.map((s) => s.name)));
  return frame(w, o.title, body, o.xLabel, o.yLabel);
}

export interface StackedBarOptions {
  title: string;
  xLabel: string;
  categories: string[];
  /** Shown under every n-th category only (long axes). */
  labelEvery?: number;
  /** Stack names (modalities) in drawing order, bottom first. */
  stacks: string[];
  /** [category][stack] shares; a category whose count is 0 is drawn empty. */
  values: number[][];
  counts: number[];
  /** Canvas width (NARROW or WIDE). */
  width?: number;
}

/** Bars of shares that sum to 1 per category, stacked. */
export function stackedBarChart(o: StackedBarOptions): string {
  const w = o.width ?? NARROW;
  const plotW = w - M.left - M.right;
  const n = o.categories.length;
  const slot = plotW / Math.max(1, n);
  const bw = Math.max(1, slot * 0.8);
  const y = (v: number) => round(M.top + PLOT_H - v * PLOT_H);
  const body = yAxis(plotW, 0, 1, y, (v) => v.toFixed(1));
  const every = o.labelEvery ?? 1;
  o.categories.forEach((label, c) => {
    const bx = round(M.left + c * slot + (slot - bw) / 2);
    if (c % every === 0 || c === n - 1) {
      body.push(
        `<text class="tick" x="${round(bx + bw / 2)}" y="${M.top + PLOT_H + 16}" ` +
          `text-anchor="middle">${escapeHtml(label)}</text>`,
      );
    }
    if (!o.counts[c]) return;
    const tip = `${label}: ` +
      o.stacks.map((s, k) => `${s} ${formatNumber(o.values[c][k])}`).join(", ") +
      ` (${o.counts[c]} steps)`;
    let acc = 0;
    const rects = o.stacks.map((_, k) => {
      const v = Math.max(0, o.values[c][k]);
      const top = y(acc + v);
      const h = round(y(acc) - top);
      acc += v;
      return `<rect x="${bx}" y="${top}" width="${round(bw)}" height="${h}" ` +
        `fill="${PALETTE[k % PALETTE.length]}"/>`;
    });
    body.push(`<g><title>${escapeHtml(tip)}</title>${rects.join("")}</g>`);
  });
  body.push(
    `<line class="axis" x1="${M.left}" x2="${M.left + plotW}" y1="${M.top + PLOT_H}" ` +
      `y2="${M.top + PLOT_H}"/>`,
  );
  body.push(...legend(w, o.stacks));
  return frame(w, o.title, body, o.xLabel, "mean weight");
}

function noData(plotW: number): string {
  return `<text class="tick" x="${M.left + plotW / 2}" y="${M.top + PLOT_H / 2}" ` +
    `text-anchor="middle">no data</text>`;
}

function round(v: number): number {
  return Math.round(v * 10) / 10;
}
