// `duaf export` end to end on the beauty-mini fixture: for every model kind (and DuAF-MAT's
// graph variants), a tiny model trained for a couple of steps is exported, and onnxruntime-web's scores on every test user match the
// engine's (1e-4 relative to the row's largest score) with identical top-10 lists (ties aside);
// `eval`/`recommend --runtime ort` agree with the engine; bad inputs fail with one line, exit 2,
// and leave no file behind.
import assert from "node:assert/strict";
import { join } from "node:path";
import { batchInputs } from "../core/export/export_run.ts";
import { readOnnxModel } from "../core/export/onnx_graph.ts";
import { META } from "../core/export/onnx_export.ts";
import { createSession, ortTensor } from "../core/features/ort.ts";
import { readSafetensors, writeSafetensors } from "../core/io/safetensors.ts";
import type { SequenceBatch } from "../core/models/batch.ts";
import { DuafMat } from "../core/models/duaf/duafmat.ts";
import { Rng } from "../core/random.ts";
import { OrtScorer } from "../core/serve/ort_scorer.ts";
import {
  recommendBatch,
  type RecommendOutcome,
  type RecommendRequest,
  recommendWith,
} from "../core/serve/recommend.ts";
import { engineScorer } from "../core/serve/scorer.ts";
import { topK } from "../core/serve/topk.ts";
import { batchFromHistories, makeBatch, splitExamples } from "../core/models/examples.ts";
import { datasetManifestSha256 } from "../core/data/identity.ts";
import { openRun } from "../core/train/run.ts";
import { VERSION } from "../core/version.ts";
import { listDir, runCli } from "./helpers/run_cli.ts";
import { TINY_SETS, tinyDataset, tinyImageDataset, tinyTrain } from "./helpers/tiny_run.ts";

const TOL = 1e-4;
const CHECK_SCRIPT = new URL("../tools/check_onnx.mjs", import.meta.url).pathname;

interface Case {
  model: string;
  /** Overrides on top of the tiny config (a couple of steps, small widths). */
  sets: string[];
  /** Train on the dataset with (partly missing) image features. */
  images?: boolean;
}

const CASES: Record<string, Case> = {
  sasrec: { model: "sasrec", sets: ["layers=2"] },
  // gSASRec's form: scores against an output table of its own.
  "sasrec-separate": {
    model: "sasrec",
    sets: ["outputEmbedding=separate", "loss=gbce", "negatives=8"],
  },
  gru4rec: { model: "gru4rec", sets: ["gruHidden=16", "gruLayers=2"] },
  fdsa: { model: "fdsa", sets: [] },
  lrurec: { model: "lrurec", sets: ["layers=2"] },
  pop: { model: "pop", sets: [] },
  bert4rec: { model: "bert4rec", sets: ["layers=2"] },
  // Time-aware fusion of ID, text and images; MAT-MoE fills the 30 % of items without images.
  duafmat: { model: "duafmat", sets: ["layers=2"], images: true },
  // Ablations with other graphs: ID-only fusion query and mean-filled images; average fusion
  // (no timestamps input) scored against the ID table.
  "duafmat-query-id": {
    model: "duafmat",
    sets: ["duafmat.query=id", "duafmat.matMoe=false", "duafmat.missingFill=mean"],
    images: true,
  },
  // The attention-form fusion score, with a logit multiplier the graph must apply as well.
  "duafmat-projected": {
    model: "duafmat",
    sets: ["duafmat.fusionScore=projected", "duafmat.weightScale=2"],
    images: true,
  },
  "duafmat-no-fusion": {
    model: "duafmat",
    sets: ["duafmat.fusion=false", "duafmat.scoreWith=id"],
  },
  nova: { model: "nova", sets: ["novaAttributes=category,text"] },
  "nova-concat": { model: "nova", sets: ["novaFusion=concat"] },
  difsr: { model: "difsr", sets: ["difsrAttributeHidden=8"] },
  // concat / gate: the graph pads item_seq to maxLen, as the engine does.
  "difsr-gate": {
    model: "difsr",
    sets: ["difsrFusion=gate", "difsrAttributes=category,text", "difsrAttributeHidden=8"],
  },
  "difsr-concat": { model: "difsr", sets: ["difsrFusion=concat", "difsrAttributeHidden=8"] },
  unisrec: { model: "unisrec", sets: ["layers=2"] },
  "unisrec-inductive": { model: "unisrec", sets: ["unisrecMode=inductive"] },
  // The DFT as constant MatMuls; item_seq padded to maxLen, as the engine transforms it.
  tedrec: { model: "tedrec", sets: ["tedrecExperts=2"] },
  // The fused item table (MoE adaptors, zero-filled missing images, MoE fusion) baked in.
  m3srec: { model: "m3srec", sets: ["m3srecExperts=2"], images: true },
  // The item table (side adapted networks over the layer states, com_dense) baked in.
  iisan: { model: "iisan", sets: ["iisanSideDim=16", "iisanAdapterDown=8"], images: true },
};

/** Scores agree within TOL relative to the row's largest |engine score|; top-10 ties aside. */
function assertRowsMatch(
  what: string,
  ort: Float32Array,
  engine: Float32Array,
  rows: number,
  cols: number,
): void {
  for (let r = 0; r < rows; r++) {
    let scale = 1e-12;
    for (let c = 0; c < cols; c++) scale = Math.max(scale, Math.abs(engine[r * cols + c]));
    for (let c = 0; c < cols; c++) {
      const diff = Math.abs(ort[r * cols + c] - engine[r * cols + c]);
      assert.ok(
        diff <= TOL * scale,
        `${what}: row ${r} item ${c}: ort ${ort[r * cols + c]} vs engine ${engine[r * cols + c]}`,
      );
    }
    const pad = (c: number) => c === 0;
    const te = topK(engine, r, cols, 10, pad);
    const to = topK(ort, r, cols, 10, pad);
    for (let i = 0; i < te.items.length; i++) {
      // The same item, or one the engine scores equally (a tie within the tolerance).
      const same = to.items[i] === te.items[i] ||
        Math.abs(engine[r * cols + to.items[i]] - te.scores[i]) <= TOL * scale;
      assert.ok(
        same,
        `${what}: row ${r} rank ${i}: ort item ${to.items[i]}, engine ${te.items[i]}`,
      );
    }
  }
}

Deno.test("export: ONNX graphs of every model kind match the engine", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "duaf-export-" });
  try {
    const ds = await tinyDataset(root);
    const withImages = await tinyImageDataset(root);
    const runs: Record<string, string> = {};
    for (const [kind, c] of Object.entries(CASES)) {
      await t.step(kind, async () => {
        const run = join(root, kind);
        const data = c.images ? withImages : ds;
        await tinyTrain(data, run, [
          ...TINY_SETS,
          `model=${c.model}`,
          "epochs=1",
          "maxSteps=2",
          "maxLen=20",
          ...c.sets,
        ]);
        runs[kind] = run;
        const check = join(root, `${kind}.check.json`);
        const r = await runCli(["export", run, "--topk", "10", "--check-data", check, "--quiet"]);
        assert.equal(r.code, 0, r.stderr);
        const report = JSON.parse(r.stdout);
        const onnxPath = join(run, "model.onnx");
        assert.equal(report.onnx, onnxPath);

        // The file: documented inputs with dynamic dims, and the metadata that ties it to the run.
        const bytes = await Deno.readFile(onnxPath);
        const m = readOnnxModel(bytes);
        const opened = await openRun(run);
        const cols = opened.dataset.numItems + 1;
        const fused = opened.model instanceof DuafMat && opened.model.time !== null;
        const expectInputs = c.model === "pop"
          ? ["item_seq_len"]
          : ["item_seq", "item_seq_len", ...(fused ? ["timestamps"] : [])];
        assert.deepEqual(report.inputs, expectInputs);
        assert.deepEqual(m.inputs.map((i) => i.name), expectInputs);
        for (const i of m.inputs) {
          assert.equal(i.dtype, i.name === "timestamps" ? "float32" : "int64");
          assert.deepEqual(i.shape, i.name === "item_seq_len" ? ["batch"] : ["batch", "seq"]);
        }
        const weightsOut = fused
          ? [["modality_weights", ["batch", "seq", (opened.model as DuafMat).modalities.length]]]
          : [];
        assert.deepEqual(m.outputs.map((o) => [o.name, o.shape]), [
          ["scores", ["batch", cols]],
          ...weightsOut,
          ["topk_scores", ["batch", 10]],
          ["topk_items", ["batch", 10]],
        ]);
        assert.deepEqual(report.outputs, m.outputs.map((o) => o.name));
        assert.equal(m.metadata[META.version], VERSION);
        assert.equal(m.metadata[META.model], c.model);
        assert.equal(m.metadata[META.dataset], await datasetManifestSha256(data));
        assert.equal(Number(m.metadata[META.origin]), opened.origin);

        // Every test user, in batches of 256 (each padded to its own longest history).
        const scorer = await OrtScorer.open(opened, run);
        const engine = engineScorer(opened.model);
        const ex = splitExamples(opened.dataset, "test");
        const maxLen = opened.manifest.config.maxLen;
        const batches: SequenceBatch[] = [];
        for (let s = 0; s < ex.users.length; s += 256) {
          const end = Math.min(ex.users.length, s + 256);
          batches.push(makeBatch(opened.dataset, ex, null, s, end, maxLen, opened.origin, null));
        }
        // Dynamic shapes at the edges: a single one-item history, and a batch of full length.
        batches.push(batchFromHistories([{ items: [5], times: [opened.origin] }], maxLen, 0));
        const long = Array.from({ length: maxLen + 3 }, (_, i) => 1 + (i * 7) % (cols - 1));
        const day = 86400;
        batches.push(batchFromHistories(
          [
            { items: long, times: long.map((_, i) => opened.origin + day * (i * i + 0.5)) },
            { items: [3, 1], times: [opened.origin + 9 * day, opened.origin + 4000 * day] },
          ],
          maxLen,
          opened.origin,
        ));
        for (const [i, b] of batches.entries()) {
          assertRowsMatch(
            `${kind} batch ${i}`,
            await scorer.scoreAll(b),
            await engine.scoreAll(b),
            b.size,
            cols,
          );
        }
        await scorer.close();

        // The TopK head equals top-k of the scores with the padding column excluded.
        const session = await createSession(bytes);
        const b = batches[0];
        const feeds: Record<string, ReturnType<typeof ortTensor>> = {};
        for (const [name, v] of Object.entries(batchInputs(b, report.inputs))) {
          feeds[name] = name === "timestamps"
            ? ortTensor("float32", Float32Array.from(v.data), v.dims)
            : ortTensor("int64", BigInt64Array.from(v.data, BigInt), v.dims);
        }
        const out = await session.run(feeds);
        const scores = out.scores.data as Float32Array;
        const items = out.topk_items.data as BigInt64Array;
        const vals = out.topk_scores.data as Float32Array;
        for (let r = 0; r < b.size; r++) {
          const want = topK(scores, r, cols, 10, (c) => c === 0);
          assert.deepEqual([...vals.subarray(r * 10, r * 10 + 10)], [...want.scores]);
          for (let i = 0; i < 10; i++) {
            const got = Number(items[r * 10 + i]);
            assert.ok(
              got >= 1 && scores[r * cols + got] === want.scores[i],
              `${kind} topk row ${r}`,
            );
          }
        }
        // DuAF's per-step modality weights equal the engine's explanation.
        if (fused) {
          const ctx = { training: false, rng: new Rng(0) };
          const explained = opened.model.explain!(b, ctx);
          const omega = out.modality_weights.data as Float32Array;
          const names = explained.modalities;
          for (let r = 0; r < b.size; r++) {
            explained.perRow(r, b.lengths[r]).forEach((step, i) => {
              names.forEach((n, k) => {
                const got = omega[(r * b.len + i) * names.length + k];
                assert.ok(Math.abs(got - step[n]) < 1e-5, `${kind} weight ${r}/${i}/${n}`);
              });
            });
          }
        }
        await session.release();

        // The committed check script: a real comparison where onnxruntime-node is installed.
        const node = await new Deno.Command("node", { args: [CHECK_SCRIPT, onnxPath, check] })
          .output().catch(() => null);
        if (node) {
          const text = new TextDecoder().decode(node.stdout);
          assert.equal(node.code, 0, text + new TextDecoder().decode(node.stderr));
          assert.match(text, /^(ok: \d+ rows|skipped)/);
        }
      });
    }

    await t.step("export is byte-deterministic; --onnx chooses the file", async () => {
      const other = join(root, "again.onnx");
      const r = await runCli(["export", runs.sasrec, "--onnx", other, "--topk", "10", "--quiet"]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(
        await Deno.readFile(other),
        await Deno.readFile(join(runs.sasrec, "model.onnx")),
      );
    });

    await t.step("eval and recommend --runtime ort agree with the engine", async () => {
      for (const kind of ["sasrec", "gru4rec"]) {
        const args = ["eval", runs[kind], "--split", "valid", "--mask-seen", "--quiet"];
        const e = await runCli(args);
        const o = await runCli([...args, "--runtime", "ort"]);
        assert.equal(o.code, 0, o.stderr);
        const em = JSON.parse(e.stdout);
        const om = JSON.parse(o.stdout);
        assert.equal(om.runtime, "ort");
        for (const [name, v] of Object.entries(em.metrics as Record<string, number>)) {
          assert.ok(Math.abs(om.metrics[name] - v) < 1e-9, `${kind} ${name}`);
        }
      }
      // recommend's serving path (core/serve, shared by the CLI), engine vs exported graph.
      const opened = await openRun(runs.sasrec);
      const requests: RecommendRequest[] = opened.dataset.userIds().slice(0, 40).map((user, i) => ({
        source: `user ${i}`,
        value: { user },
      }));
      requests.push({
        source: "history",
        value: { history: opened.dataset.itemIds().slice(1, 4) },
      });
      const opts = { k: 10, includeSeen: false, explain: false };
      const engine = recommendBatch(opened, requests, opts);
      const scorer = await OrtScorer.open(opened, runs.sasrec);
      const ort = await recommendWith(opened, scorer, requests, opts);
      await scorer.close();
      const items = (outs: RecommendOutcome[]) =>
        outs.map((o) => "result" in o ? o.result.items : o);
      assert.deepEqual(items(ort), items(engine));
    });

    await t.step("bad input: one line, exit 2, nothing written", async () => {
      const fail = async (args: string[], pattern: RegExp) => {
        const r = await runCli([...args, "--quiet"]);
        assert.equal(r.code, 2, r.stderr);
        assert.equal(r.stderr.split("\n").length, 1, r.stderr);
        assert.match(r.stderr, pattern);
      };
      const out = join(root, "bad");
      await Deno.mkdir(out);
      // A run whose checkpoint is missing.
      const broken = join(root, "broken");
      await Deno.mkdir(broken);
      await Deno.copyFile(join(runs.sasrec, "manifest.json"), join(broken, "manifest.json"));
      await fail(["export", broken, "--onnx", join(out, "a.onnx")], /checkpoint missing/);
      // A checkpoint written by another duaf version.
      const file = await readSafetensors(join(runs.sasrec, "model.safetensors"));
      await writeSafetensors(join(broken, "model.safetensors"), Object.fromEntries(file.tensors), {
        ...file.metadata,
        duaf: "0.0.1",
      });
      await fail(
        ["export", broken, "--onnx", join(out, "a.onnx"), "--check-data", join(out, "c.json")],
        /written by duaf 0\.0\.1/,
      );
      await fail(["export", join(root, "nowhere")], /not a duaf run/);
      await fail(["export", runs.sasrec, "--topk", "0", "--onnx", join(out, "a.onnx")], /--topk/);
      assert.deepEqual(listDir(out), []);
      assert.deepEqual(listDir(broken), ["manifest.json", "model.safetensors"]);

      // --runtime ort without an export, with another run's export, with --onnx alone.
      await Deno.remove(join(runs.pop, "model.onnx"));
      await fail(["eval", runs.pop, "--runtime", "ort"], /model\.onnx not found: run 'duaf export/);
      await fail(
        ["eval", runs.gru4rec, "--runtime", "ort", "--onnx", join(runs.sasrec, "model.onnx")],
        /exported from another (model|checkpoint)/,
      );
      await fail(
        ["recommend", runs.sasrec, "--user", "x", "--onnx", "m.onnx"],
        /needs --runtime ort/,
      );
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
