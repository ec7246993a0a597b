// `duaf report`: one self-contained, well-formed HTML file whose charts carry the run's data
// points, plus the modality-weight aggregation it draws for DuAF-MAT.
import assert from "node:assert/strict";
import { join } from "node:path";
import { resolveConfig } from "../core/config.ts";
import type { SequenceBatch } from "../core/models/batch.ts";
import { formatNumber } from "../core/report/html.ts";
import { niceTicks } from "../core/report/svg.ts";
import {
  accumulateWeights,
  finishWeights,
  gapBucket,
  gapLabels,
  type ModalityStats,
  newModalityStats,
} from "../core/report/modality.ts";
import { activateBackend, runTraining } from "../core/train/run.ts";
import { readRunManifest } from "../core/train/run_dir.ts";
import type { EpochRecord } from "../core/train/trainer.ts";
import { htmlProblems } from "./helpers/html_check.ts";
import { listDir, runCli } from "./helpers/run_cli.ts";
import { TINY_SETS, tinyDataset, tinyTrain } from "./helpers/tiny_run.ts";

interface ReportData {
  history: EpochRecord[];
  test: Record<string, number> | null;
  modality: ModalityStats | null;
}

async function report(run: string, out: string, extra: string[] = []) {
  const r = await runCli(["report", run, "--out", out, "--backend", "wasm", "--quiet", ...extra]);
  assert.equal(r.code, 0, r.stderr);
  const html = await Deno.readTextFile(out);
  const data = /<script type="application\/json" id="duaf-report-data">([^<]*)<\/script>/
    .exec(html);
  assert.ok(data, "embedded data block missing");
  return { json: JSON.parse(r.stdout), html, data: JSON.parse(data[1]) as ReportData };
}

function assertSelfContained(html: string): void {
  assert.deepEqual(htmlProblems(html), []);
  assert.ok(html.startsWith("<!DOCTYPE html>"));
  // Nothing is fetched: no links, sources, imports or URLs, and no executable script.
  assert.doesNotMatch(html, /\b(src|href)=|<link|@import|url\(|https?:/i);
  assert.equal((html.match(/<script/g) ?? []).length, 1);
}

/** The chart count the report should hold for this history (one per loss part, one per metric
 * family, the epoch-time chart, and two modality charts when there are weights). */
function expectedCharts(history: EpochRecord[], withWeights: boolean): number {
  const parts = new Set(history.flatMap((r) => Object.keys(r.loss)));
  const families = new Set(
    history.flatMap((r) => Object.keys(r.valid).map((k) => k.split("@")[0])),
  );
  return parts.size + families.size + 1 + (withWeights ? 2 : 0);
}

function assertCurvePoints(html: string, history: EpochRecord[]): void {
  for (const r of history) {
    for (const [name, v] of [...Object.entries(r.loss), ...Object.entries(r.valid)]) {
      const point = `<title>${name}, epoch ${r.epoch}: ${formatNumber(v)}</title>`;
      assert.ok(html.includes(point), `missing data point ${point}`);
    }
  }
}

Deno.test("report: sasrec and duafmat runs, and a run with no finished epoch", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "duaf-cli-report-" });
  try {
    const ds = await tinyDataset(root);

    await t.step("sasrec: curves, config and test metrics; no modality weights", async () => {
      const run = join(root, "sasrec");
      await tinyTrain(ds, run);
      const out = join(root, "sasrec.html");
      const { json, html, data } = await report(run, out);
      const m = await readRunManifest(run);
      assert.deepEqual(json, {
        report: out,
        run,
        model: "sasrec",
        epochs: 2,
        modalityWeights: false,
      });
      assertSelfContained(html);
      assert.deepEqual(data.history, m.history);
      assert.deepEqual(data.test, m.test);
      assert.equal((html.match(/<svg /g) ?? []).length, expectedCharts(m.history, false));
      assertCurvePoints(html, m.history);
      assert.match(html, /Model sasrec has no modality weights/);
      assert.ok(html.includes(`<th>ndcg</th><td class="num">${formatNumber(m.test!["ndcg@5"])}`));
      assert.ok(html.includes("<th>hidden</th><td>16</td>"));
      assert.deepEqual(listDir(root), ["ds", "sasrec", "sasrec.html"]);
    });

    await t.step("duafmat: modality weights by position and time gap", async () => {
      const run = join(root, "duafmat");
      await tinyTrain(ds, run, [...TINY_SETS, "model=duafmat", "maxSteps=2"]);
      const out = join(root, "duafmat.html");
      const { json, html, data } = await report(run, out, ["--max-users", "300"]);
      const m = await readRunManifest(run);
      assert.equal(json.modalityWeights, true);
      assertSelfContained(html);
      assert.equal((html.match(/<svg /g) ?? []).length, expectedCharts(m.history, true));
      assertCurvePoints(html, m.history);
      const s = data.modality!;
      assert.equal(s.users, 300);
      const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);
      assert.equal(sum(s.byPosition.counts), s.steps);
      // Every sequence's first visible item has no gap.
      assert.equal(sum(s.byGap.counts), s.steps - s.users);
      for (const [b, n] of s.byPosition.counts.entries()) {
        if (n) assert.ok(Math.abs(sum(s.byPosition.mean[b]) - 1) < 1e-3, `position ${b}`);
      }
      assert.match(html, /weight by position from the end/);
    });

    await t.step("a run stopped in its first epoch still gets a report", async () => {
      const run = join(root, "stopped");
      await activateBackend("wasm");
      await runTraining({
        dataset: ds,
        out: run,
        config: resolveConfig(null, TINY_SETS),
        backendName: "wasm",
        shouldStop: () => true,
      });
      const { html, data } = await report(run, join(root, "stopped.html"));
      assertSelfContained(html);
      assert.deepEqual(data.history, []);
      assert.equal(data.test, null);
      assert.match(html, /no epoch has finished yet/);
      assert.match(html, /Modality weights not computed: .*checkpoint missing/);
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("report: axis ticks are round numbers that include exact ends", () => {
  assert.deepEqual(niceTicks(3.5, 3.65), [3.5, 3.55, 3.6, 3.65]);
  assert.deepEqual(niceTicks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(niceTicks(0.0021, 0.0079), [0.004, 0.006]);
  assert.deepEqual(niceTicks(2, 2), [2]);
});

Deno.test("report: time-gap buckets are half a decade wide in days", () => {
  const cases: [number, string][] = [
    [0, "0"],
    [0.5, "≤1"],
    [1, "≤1"],
    [2, "1-3"],
    [3, "1-3"],
    [29.9, "10-30"],
    [1000, "300-1k"],
    [5000, ">1k"],
  ];
  for (const [days, label] of cases) assert.equal(gapLabels()[gapBucket(days)], label, `${days}`);
});

Deno.test("report: modality weights are averaged by position from the end and by gap", () => {
  // Row 0: three steps on days 0, 0, 5; row 1: two steps on days 10, 10.5 (len 3, padded).
  const batch: SequenceBatch = {
    size: 2,
    len: 3,
    items: Int32Array.from([1, 2, 3, 4, 5, 0]),
    lengths: Int32Array.from([3, 2]),
    times: Float32Array.from([0, 0, 5, 10, 10.5, 0]),
    users: Int32Array.from([0, 1]),
    targets: Int32Array.from([1, 2]),
  };
  // The text weight is 0.1 * (step + 1) + 0.1 * row, the id weight the rest.
  const weights = {
    modalities: ["id", "text"],
    perRow: (row: number, length: number) =>
      Array.from({ length }, (_, j) => {
        const text = 0.1 * (j + 1) + 0.1 * row;
        return { id: 1 - text, text };
      }),
  };
  const s = newModalityStats("valid", ["id", "text"], 4);
  accumulateWeights(s, batch, weights);
  finishWeights(s);
  assert.equal(s.users, 2);
  assert.equal(s.steps, 5);
  assert.deepEqual(s.byPosition.counts, [2, 2, 1, 0]);
  const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} vs ${b}`);
  // Last steps: row 0 step 2 (0.3), row 1 step 1 (0.3) -> mean 0.3, sd 0.
  close(s.byPosition.mean[0][1], 0.3);
  close(s.byPosition.std[0][1], 0);
  // One from the end: row 0 step 1 (0.2), row 1 step 0 (0.2).
  close(s.byPosition.mean[1][1], 0.2);
  close(s.byPosition.mean[2][1], 0.1);
  close(s.byPosition.mean[2][0], 0.9);
  // Gaps: row 0 -> 0 d (0.2) and 5 d (0.3); row 1 -> 0.5 d (0.3).
  const at = (label: string) => gapLabels().indexOf(label);
  assert.equal(s.byGap.counts[at("0")], 1);
  assert.equal(s.byGap.counts[at("≤1")], 1);
  assert.equal(s.byGap.counts[at("3-10")], 1);
  close(s.byGap.mean[at("0")][1], 0.2);
  close(s.byGap.mean[at("≤1")][1], 0.3);
  close(s.byGap.mean[at("3-10")][1], 0.3);
  close(s.overall[1], (0.1 + 0.2 + 0.3 + 0.2 + 0.3) / 5);
});

Deno.test("report: image weights split by real and generated images", () => {
  // Items 2 and 5 have generated images; the rest real ones.
  const batch: SequenceBatch = {
    size: 2,
    len: 3,
    items: Int32Array.from([1, 2, 3, 4, 5, 0]),
    lengths: Int32Array.from([3, 2]),
    times: Float32Array.from([0, 1, 2, 3, 4, 0]),
    users: Int32Array.from([0, 1]),
    targets: Int32Array.from([1, 2]),
  };
  const imagePresent = Uint8Array.from([0, 1, 0, 1, 1, 0]);
  // The image weight is 0.1 x the item index.
  const weights = {
    modalities: ["id", "text", "image"],
    imagePresent,
    perRow: (row: number, length: number) =>
      Array.from({ length }, (_, j) => {
        const image = 0.1 * batch.items[row * batch.len + j];
        return { id: (1 - image) / 2, text: (1 - image) / 2, image };
      }),
  };
  const s = finishWeights(
    (() => {
      const t = newModalityStats("valid", ["id", "text", "image"], 4);
      accumulateWeights(t, batch, weights);
      return t;
    })(),
  );
  const byImage = s.byImage!;
  assert.deepEqual(byImage.counts, [3, 2]);
  // Real: items 1, 3, 4 -> 0.1, 0.3, 0.4; generated: items 2, 5 -> 0.2, 0.5.
  assert.ok(Math.abs(byImage.mean[0][2] - 0.8 / 3) < 1e-12);
  assert.ok(Math.abs(byImage.mean[1][2] - 0.35) < 1e-12);
  // Without an image modality there is no such table.
  assert.equal(newModalityStats("valid", ["id", "text"], 4).byImage, null);
});
