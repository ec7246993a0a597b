// gBCE (gSASRec) and sampled softmax: the losses equal a hand computation over the same seeded
// negatives, their gradients pass finite differences, and a run trains with them reproducibly.
import assert from "node:assert/strict";
import { join } from "node:path";
import { lossPositions } from "../core/models/batch.ts";
import type { SequenceBatch } from "../core/models/batch.ts";
import { nextItemLoss } from "../core/models/sasrec.ts";
import { Rng } from "../core/random.ts";
import { tensor, tidy, withBackend } from "../core/tensor.ts";
import { f64, gradCheck } from "./helpers/gradcheck.ts";
import { TINY_SETS, tinyDataset, tinyTrain } from "./helpers/tiny_run.ts";

const N = 3, D = 4, ITEMS = 9, K = 5;
const TARGETS = Int32Array.from([2, 7, 9]);

/** Loss positions of a 3-row batch whose targets are TARGETS (last-position training). */
function positions() {
  const batch = {
    size: N,
    len: 1,
    items: new Int32Array(N),
    times: new Float32Array(N),
    lengths: new Int32Array(N).fill(1),
    users: new Int32Array(N),
    targets: TARGETS,
  } satisfies SequenceBatch;
  return lossPositions(batch);
}

function softplus(x: number): number {
  return Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)));
}

/**
 * The same loss by hand, drawing the negatives from the same seed in the same order: K per
 * position, or (`shared`) one draw of K that every position uses.
 */
function byHand(
  h: number[],
  table: number[],
  kind: "gbce" | "sampled",
  t: number,
  shared = false,
): number {
  const rng = new Rng(5);
  const sharedItems = shared ? Array.from({ length: K }, () => 1 + rng.int(ITEMS)) : [];
  const dot = (r: number, item: number) => {
    let s = 0;
    for (let c = 0; c < D; c++) s += h[r * D + c] * table[item * D + c];
    return s;
  };
  const alpha = K / (ITEMS - 1);
  const beta = alpha * (t * (1 - 1 / alpha) + 1 / alpha);
  let total = 0;
  for (let r = 0; r < N; r++) {
    const pos = dot(r, TARGETS[r]);
    const negs = shared
      ? sharedItems.map((item) => dot(r, item))
      : Array.from({ length: K }, () => dot(r, 1 + rng.int(ITEMS)));
    if (kind === "sampled") {
      const all = [pos, ...negs];
      const m = Math.max(...all);
      total += m + Math.log(all.reduce((a, v) => a + Math.exp(v - m), 0)) - pos;
    } else total += beta * softplus(-pos) + negs.reduce((a, v) => a + softplus(v), 0);
  }
  return total / N;
}

Deno.test("gbce and sampled softmax equal a hand computation, t moving gBCE's β", () => {
  const rng = new Rng(1);
  const h = Array.from({ length: N * D }, () => rng.normal());
  const table = Array.from({ length: (ITEMS + 1) * D }, () => rng.normal());
  withBackend(f64, () => {
    for (const [kind, t] of [["sampled", 0], ["gbce", 0], ["gbce", 0.75], ["gbce", 1]] as const) {
      const got = tidy(() =>
        nextItemLoss(
          tensor(h, [N, D]),
          tensor(table, [ITEMS + 1, D]),
          positions(),
          kind,
          "auto",
          { rng: new Rng(5), count: K, t },
        ).item()
      );
      const want = byHand(h, table, kind, t);
      // The scalar comes back through float32.
      assert.ok(Math.abs(got - want) < 1e-6 * Math.abs(want), `${kind} t=${t}: ${got} vs ${want}`);
    }
  });
});

Deno.test("negativeSharing=batch: one draw of K negatives for every position, by hand", () => {
  const rng = new Rng(1);
  const h = Array.from({ length: N * D }, () => rng.normal());
  const table = Array.from({ length: (ITEMS + 1) * D }, () => rng.normal());
  withBackend(f64, () => {
    for (const [kind, t] of [["sampled", 0], ["gbce", 0], ["gbce", 0.75]] as const) {
      const loss = (shared: boolean) =>
        tidy(() =>
          nextItemLoss(
            tensor(h, [N, D]),
            tensor(table, [ITEMS + 1, D]),
            positions(),
            kind,
            "auto",
            { rng: new Rng(5), count: K, t, shared },
          ).item()
        );
      const got = loss(true);
      const want = byHand(h, table, kind, t, true);
      assert.ok(Math.abs(got - want) < 1e-6 * Math.abs(want), `${kind} t=${t}: ${got} vs ${want}`);
      // Not the per-position loss: the draws differ.
      assert.ok(Math.abs(got - loss(false)) > 1e-3, `${kind}: shared equals per-position`);
    }
  });
});

Deno.test("gbce and sampled softmax: finite-difference gradients", () => {
  for (const kind of ["gbce", "sampled"] as const) {
    gradCheck(
      `${kind} loss`,
      [{ shape: [N, D] }, { shape: [ITEMS + 1, D] }],
      ([h, table]) =>
        nextItemLoss(h, table, positions(), kind, "auto", { rng: new Rng(5), count: K, t: 0.75 }),
    );
    gradCheck(
      `${kind} loss, shared negatives`,
      [{ shape: [N, D] }, { shape: [ITEMS + 1, D] }],
      ([h, table]) =>
        nextItemLoss(h, table, positions(), kind, "auto", {
          rng: new Rng(5),
          count: K,
          t: 0.75,
          shared: true,
        }),
    );
  }
});

Deno.test("train with loss=gbce and loss=sampled: reproducible runs that rank", async () => {
  const root = await Deno.makeTempDir({ prefix: "duaf-gbce-" });
  try {
    const ds = await tinyDataset(root);
    for (const loss of ["gbce", "sampled", "gbce-shared"]) {
      const sets = [...TINY_SETS, `loss=${loss.split("-")[0]}`, "negatives=32"];
      if (loss.endsWith("-shared")) sets.push("negativeSharing=batch");
      const a = await tinyTrain(ds, join(root, `${loss}-a`), sets);
      await tinyTrain(ds, join(root, `${loss}-b`), sets);
      const bytes = (d: string) => Deno.readFile(join(root, d, "model.safetensors"));
      const [x, y] = [await bytes(`${loss}-a`), await bytes(`${loss}-b`)];
      assert.ok(x.length === y.length && x.every((v, i) => v === y[i]), `${loss}: bytes differ`);
      assert.equal(a.status, "finished");
      assert.ok((a.test as Record<string, number>)["hit@20"] > 0, JSON.stringify(a.test));
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
