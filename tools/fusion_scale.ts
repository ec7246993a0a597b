/**
 * Why DuAF's weights stay near uniform: the scale of each factor of the fusion logits
 * s_i^m = <q_i, tanh(e_i^m + e_time_i)> (Eq. 7) in a trained DuAF-MAT run, over its valid users.
 *
 *   deno run -A tools/fusion_scale.ts RUN_DIR [--max-users N]
 *
 * Prints one JSON object: mean L2 norms of q_i, of the keys tanh(e^m + e_time) and of the modality
 * vectors e^m, the mean cosine between q and each key, the mean spread (max - min over modalities)
 * of the logits, the mean |ω - 1/M|, the mean norm of e_time and the mean cosine between the keys of
 * two modalities at the same step. The image rows of items without a poster use the
 * projection of a zero feature row here (the model fills them with MAT-MoE's output), so the
 * figures describe steps with a real image; they are exact for the others.
 */
import { parseArgs } from "node:util";
import type { DuafMat } from "../core/models/duaf/duafmat.ts";
import { averageFusion, prefixMean, stackModalities } from "../core/models/duaf/fusion.ts";
import { timeGaps } from "../core/models/duaf/time_embedding.ts";
import { makeBatch, splitExamples } from "../core/models/examples.ts";
import { positionIds } from "../core/models/sasrec.ts";
import * as op from "../core/ops/mod.ts";
import { noGrad, type Tensor, tensor, tidy } from "../core/tensor.ts";
import { activateBackend, openRun } from "../core/train/run.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: { "max-users": { type: "string", default: "943" } },
});
const dir = positionals[0];
if (!dir) {
  console.error("usage: deno run -A tools/fusion_scale.ts RUN_DIR [--max-users N]");
  Deno.exit(2);
}
await activateBackend("js");
const run = await openRun(dir);
const model = run.model as DuafMat;
if (model.kind !== "duafmat" || !model.time) {
  console.error(`${dir}: not a DuAF-MAT run with DuAF fusion`);
  Deno.exit(2);
}
model.eval();
const ds = run.dataset;
const ex = splitExamples(ds, "valid");
const users = Math.min(Number(values["max-users"]), ex.users.length);
const maxLen = run.manifest.config.maxLen;

const names = model.modalities as string[];
const m = names.length;
const sums = {
  steps: 0,
  q: 0,
  key: new Array(m).fill(0),
  e: new Array(m).fill(0),
  cos: new Array(m).fill(0),
  spread: 0,
  omegaDev: 0,
  time: 0,
  keyCos: 0,
};

function features(table: Float32Array, dim: number, items: Tensor): Tensor {
  return op.embedding(tensor(table, [table.length / dim, dim]), items);
}

const rowNorms = (x: Float32Array, d: number, i: number) => {
  let s = 0;
  for (let k = 0; k < d; k++) s += x[i * d + k] ** 2;
  return Math.sqrt(s);
};

for (let start = 0; start < users; start += 128) {
  const batch = makeBatch(
    ds,
    ex,
    null,
    start,
    Math.min(users, start + 128),
    maxLen,
    run.origin,
    null,
  );
  noGrad(() =>
    tidy(() => {
      const items = tensor(batch.items, [batch.size, batch.len], "i32");
      const pos = model.positionEmbedding.forward(positionIds(batch));
      const seqs: Tensor[] = [op.add(model.itemEmbedding.forward(items), pos)];
      if (names.includes("text")) {
        seqs.push(
          op.add(model.textProjection!.forward(features(ds.text!.data, ds.text!.dim, items)), pos),
        );
      }
      if (names.includes("image")) {
        seqs.push(
          op.add(
            model.imageProjection!.forward(features(ds.image!.data, ds.image!.dim, items)),
            pos,
          ),
        );
      }
      const t = tensor(batch.times, [batch.size, batch.len]);
      const gaps = tensor(timeGaps(batch.times, batch.lengths, batch.size, batch.len), [
        batch.size,
        batch.len,
      ]);
      const eTime = model.time!.forward(t, gaps).time;
      const q = prefixMean(model.cfg.duaf.query === "id" ? seqs[0] : averageFusion(seqs));
      const d = q.shape[2];
      const keys = op.tanh(
        op.add(stackModalities(seqs), op.reshape(eTime, [batch.size, batch.len, 1, d])),
      );
      const qv = q.toFloat32();
      const kv = keys.toFloat32();
      const ev = seqs.map((s) => s.toFloat32());
      const tv = eTime.toFloat32();
      for (let r = 0; r < batch.size; r++) {
        for (let i = 0; i < batch.lengths[r]; i++) {
          const at = r * batch.len + i;
          const qn = rowNorms(qv, d, at);
          sums.q += qn;
          const logits: number[] = [];
          for (let k = 0; k < m; k++) {
            let dot = 0;
            let kn = 0;
            for (let c = 0; c < d; c++) {
              const kc = kv[(at * m + k) * d + c];
              dot += qv[at * d + c] * kc;
              kn += kc * kc;
            }
            kn = Math.sqrt(kn);
            logits.push(dot * model.cfg.duaf.weightScale);
            sums.key[k] += kn;
            sums.e[k] += rowNorms(ev[k], d, at);
            sums.cos[k] += dot / Math.max(1e-12, qn * kn);
          }
          sums.time += rowNorms(tv, d, at);
          // Mean cosine between the keys of different modalities at this step.
          let kc = 0;
          for (let a = 0; a < m; a++) {
            for (let b = a + 1; b < m; b++) {
              let dot = 0;
              for (let c = 0; c < d; c++) {
                dot += kv[(at * m + a) * d + c] * kv[(at * m + b) * d + c];
              }
              kc += dot /
                Math.max(1e-12, rowNorms(kv, d, at * m + a) * rowNorms(kv, d, at * m + b));
            }
          }
          sums.keyCos += kc / Math.max(1, (m * (m - 1)) / 2);
          const mx = Math.max(...logits);
          const z = logits.reduce((a, s) => a + Math.exp(s - mx), 0);
          sums.spread += mx - Math.min(...logits);
          sums.omegaDev += logits.reduce((a, s) => a + Math.abs(Math.exp(s - mx) / z - 1 / m), 0) /
            m;
          sums.steps++;
        }
      }
    })
  );
}
const n = sums.steps;
const per = (a: number[]) =>
  Object.fromEntries(names.map((k, i) => [k, Number((a[i] / n).toFixed(4))]));
console.log(JSON.stringify({
  run: dir,
  steps: n,
  qNorm: Number((sums.q / n).toFixed(4)),
  keyNorm: per(sums.key),
  modalityNorm: per(sums.e),
  cosQKey: per(sums.cos),
  timeNorm: Number((sums.time / n).toFixed(4)),
  keyCosAcrossModalities: Number((sums.keyCos / n).toFixed(4)),
  logitSpread: Number((sums.spread / n).toFixed(4)),
  meanAbsOmegaMinusUniform: Number((sums.omegaDev / n).toFixed(4)),
}));
