/** HTML building blocks for the report: escaping, number formatting, tables and the page shell. */
import { markedFile } from "../io/output_guard.ts";

export function escapeHtml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
}

/** Four significant digits, without exponent noise for the usual metric and loss ranges. */
export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e6 || a < 1e-4) return v.toExponential(3);
  return String(Number(v.toPrecision(4)));
}

export type Cell = string | number | null;

/** A table (no header row when `head` is empty); numbers are formatted and right-aligned. */
export function table(head: string[], rows: Cell[][], cls = ""): string {
  const cell = (c: Cell, tag: "td" | "th") =>
    typeof c === "number"
      ? `<${tag} class="num">${formatNumber(c)}</${tag}>`
      : `<${tag}>${c === null ? "&ndash;" : escapeHtml(c)}</${tag}>`;
  return [
    `<table${cls ? ` class="${cls}"` : ""}>`,
    head.length ? `<thead><tr>${head.map((h) => cell(h, "th")).join("")}</tr></thead>` : "",
    "<tbody>",
    ...rows.map((r) => `<tr>${r.map((c, i) => cell(c, i === 0 ? "th" : "td")).join("")}</tr>`),
    "</tbody>",
    "</table>",
  ].join("\n");
}

const CSS = `
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1b1b1b;
  margin: 0 auto; max-width: 1120px; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
p.sub, p.note { color: #555; margin: 4px 0 12px; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); gap: 12px; }
.half { flex: 1 1 440px; max-width: 560px; }
svg.chart { width: 100%; height: auto; background: #fff; border: 1px solid #e4e4e4; }
svg .title { font-size: 13px; font-weight: 600; }
svg .tick, svg .legend { font-size: 10.5px; fill: #444; }
svg .axis-label { font-size: 11px; fill: #444; }
svg .grid { stroke: #ececec; }
svg .axis { stroke: #888; }
svg .mark { stroke: #999; stroke-dasharray: 4 3; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: left; }
thead th { border-bottom: 2px solid #ccc; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.cols { display: flex; flex-wrap: wrap; gap: 32px; align-items: flex-start; }
code { font-size: 12.5px; }
`;

const GENERATOR = "duaf report";

/** A report file as the output guard sees it (recognised by its generator tag). */
export const REPORT_FILE = markedFile(
  "duaf report",
  `<meta name="generator" content="${GENERATOR}">`,
);

/** The whole document; `dataJson` is embedded as an inert data block for scripts that read it. */
export function page(title: string, body: string[], dataJson: string): string {
  // "</" inside the data block would end it early; JSON allows "<\/" for "</".
  const data = dataJson.replace(/<\//g, "<\\/");
  return [
    "<!DOCTYPE html>",
    '<html lang="en">',
    "<head>",
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<meta name="generator" content="${GENERATOR}">`,
    `<title>${escapeHtml(title)}</title>`,
    `<style>${CSS}</style>`,
    "</head>",
    "<body>",
    ...body,
    `<script type="application/json" id="duaf-report-data">${data}</script>`,
    "</body>",
    "</html>",
    "",
  ].join("\n");
}
