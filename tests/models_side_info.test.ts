/**
 * NOVA and DIF-SR: side information reaches the output only through attention weights, score
 * shapes, config errors for missing attributes, and `duaf train` end to end on beauty-mini (the
 * loss falls over a few steps; eval reopens the run).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { JsBackend } from "../core/backends/js.ts";
import { resolveConfig } from "../core/config.ts";
import { UsageError } from "../core/errors.ts";
import type { SequenceBatch } from "../core/models/batch.ts";
import { Difsr, type DifsrConfig } from "../core/models/difsr.ts";
import type { ItemSide } from "../core/models/item_side.ts";
import { Nova, type NovaConfig } from "../core/models/nova.ts";
import { createModel } from "../core/models/registry.ts";
import { Adam } from "../core/optim/adam.ts";
import { Rng } from "../core/random.ts";
import { backward, tidy, withBackend } from "../core/tensor.ts";
import { runCli } from "./helpers/run_cli.ts";
import { TINY_SETS, tinyDataset, tinyTrainArgs } from "./helpers/tiny_run.ts";

const NUM_ITEMS = 12;

function side(withText: boolean): ItemSide {
  const rng = new Rng(3);
  const dim = 5;
  const data = new Float32Array((NUM_ITEMS + 1) * dim);
  for (let i = dim; i < data.length; i++) data[i] = rng.normal();
  return {
    numItems: NUM_ITEMS,
    text: withText ? { dim, data, mask: new Uint8Array(NUM_ITEMS + 1).fill(1) } : null,
    image: null,
    itemCategory: Int32Array.from({ length: NUM_ITEMS + 1 }, (_, i) => (i === 0 ? 0 : 1 + i % 3)),
    numCategories: 4,
  };
}

function batchOf(seqs: number[][], len: number): SequenceBatch {
  const items = new Int32Array(seqs.length * len);
  seqs.forEach((s, r) => items.set(s, r * len));
  return {
    size: seqs.length,
    len,
    items,
    lengths: Int32Array.from(seqs.map((s) => s.length)),
    times: new Float32Array(items.length),
    users: new Int32Array(seqs.length),
    targets: Int32Array.from(seqs.map((s) => 1 + s[0] % NUM_ITEMS)),
  };
}

const encoder = {
  numItems: NUM_ITEMS,
  maxLen: 4,
  layers: 2,
  heads: 2,
  hidden: 8,
  inner: 16,
  hiddenDropout: 0,
  attnDropout: 0,
  layerNormEps: 1e-12,
  initStd: 0.3,
  loss: "ce" as const,
};

function models(items: ItemSide) {
  const nova = (fusion: NovaConfig["fusion"]) =>
    new Nova({ ...encoder, attributes: ["category", "text"], fusion }, items, new Rng(1));
  const difsr = (fusion: DifsrConfig["fusion"]) =>
    new Difsr(
      {
        ...encoder,
        attributes: ["category", "text"],
        attributeHidden: 4,
        fusion,
        lambdas: [1],
      },
      items,
      new Rng(1),
    );
  return [
    ...(["sum", "concat", "gate"] as const).map((f) => [`nova ${f}`, nova(f)] as const),
    ...(["sum", "concat", "gate"] as const).map((f) => [`difsr ${f}`, difsr(f)] as const),
  ];
}

Deno.test("side information changes outputs only through attention weights", () => {
  withBackend(new JsBackend(), () => {
    const items = side(true);
    const ctx = { training: false, rng: new Rng(0) };
    const single = batchOf([[3], [7], [12]], 4);
    const longer = batchOf([[3, 5, 9], [7, 2, 4, 1], [12, 6]], 4);
    for (const [name, model] of models(items)) {
      model.eval();
      const run = () =>
        tidy(() => [
          model.forward(single, ctx).toFloat32(),
          model.forward(longer, ctx).toFloat32(),
        ]);
      const original = items.itemCategory.slice();
      const [one0, many0] = run();
      // Every item gets another category (index 0 stays padding).
      items.itemCategory.set(original.map((c, i) => (i === 0 ? 0 : 1 + c % 3)));
      const [one1, many1] = run();
      items.itemCategory.set(original);
      // One position: the softmax has one key, so only the item's value reaches the output.
      assert.deepEqual(Array.from(one1), Array.from(one0), `${name}: one position`);
      const moved = many1.some((v, i) => Math.abs(v - many0[i]) > 1e-6);
      assert.ok(moved, `${name}: categories should move longer sequences' outputs`);
    }
  });
});

Deno.test("scoreAll is [batch, numItems + 1] and scoreParts factors it", () => {
  withBackend(new JsBackend(), () => {
    const ctx = { training: false, rng: new Rng(0) };
    const batch = batchOf([[1, 2], [3], [4, 5, 6]], 3);
    for (const [name, model] of models(side(true))) {
      model.eval();
      tidy(() => {
        const s = model.scoreAll(batch, ctx);
        assert.deepEqual(s.shape, [3, NUM_ITEMS + 1], name);
        const { users, items } = model.scoreParts(batch, ctx);
        assert.deepEqual(users.shape, [3, encoder.hidden], name);
        assert.deepEqual(items.shape, [NUM_ITEMS + 1, encoder.hidden], name);
      });
    }
  });
});

Deno.test("DIF-SR's attribute loss is a part of the loss, categorical attributes only", () => {
  withBackend(new JsBackend(), () => {
    const ctx = { training: false, rng: new Rng(0) };
    const batch = batchOf([[1, 2], [3], [4, 5, 6]], 4);
    const make = (attributes: ("category" | "text")[], lambdas: number[]) =>
      new Difsr(
        { ...encoder, attributes, attributeHidden: 4, fusion: "sum", lambdas },
        side(true),
        new Rng(1),
      );
    tidy(() => {
      const { total, parts } = make(["category", "text"], [2, 5]).loss(batch, ctx);
      assert.deepEqual(Object.keys(parts), ["main", "attr_category"]);
      const want = parts.main.item() + 2 * parts.attr_category.item();
      assert.ok(Math.abs(total.item() - want) < 1e-5, `${total.item()} vs ${want}`);
      const textOnly = make(["text"], [5]).loss(batch, ctx);
      assert.deepEqual(Object.keys(textOnly.parts), ["main"]);
    });
  });
});

Deno.test("difsrFreezeAttributes: attribute tables N(0, 1) stay as drawn while the rest trains", () => {
  withBackend(new JsBackend(), () => {
    const model = new Difsr(
      {
        ...encoder,
        attributes: ["category", "text"],
        attributeHidden: 4,
        fusion: "sum",
        lambdas: [1],
        freezeAttributes: true,
      },
      side(true),
      new Rng(1),
    );
    const frozen = model.attributeEmbeddings.parameters();
    const trainable = model.trainableParameters();
    assert.equal(trainable.length + frozen.length, model.parameters().length);
    assert.ok(frozen.every((p) => !trainable.includes(p)));
    const before = model.namedParameters().map(([n, p]) => [n, p.toFloat32()] as const);
    const table = before.find(([n]) => n === "attribute_embeddings.0.embedding.weight")![1];
    const std = Math.sqrt(table.reduce((a, v) => a + v * v, 0) / table.length);
    assert.ok(std > 0.5 && std < 1.5, `frozen table std ${std}`);
    const opt = new Adam(trainable, { lr: 0.01 });
    const rng = new Rng(2);
    for (let s = 0; s < 3; s++) {
      tidy(() => {
        backward(model.loss(batchOf([[1, 2, 3], [4, 5]], 4), { training: true, rng }).total);
        opt.step();
        opt.zeroGrad();
      });
    }
    for (const [name, old] of before) {
      const now = model.namedParameters().find(([n]) => n === name)![1].toFloat32();
      const moved = now.some((v, i) => v !== old[i]);
      assert.equal(moved, !name.startsWith("attribute_embeddings."), name);
    }
  });
});

Deno.test("config: a missing attribute or window training with mixed scores is one UsageError line", () => {
  const cases: [string[], RegExp][] = [
    [["model=difsr", "difsrAttributes=category,text"], /difsr: .*"text".*no item text/],
    [["model=nova", "novaAttributes=text"], /nova: .*"text".*no item text/],
    [["model=difsr", "difsrFusion=gate", "trainMode=window"], /trainMode=prefix/],
  ];
  for (const [sets, message] of cases) {
    assert.throws(
      () => createModel(resolveConfig(null, sets), side(false), new Rng(1), () => {}),
      (e: unknown) =>
        e instanceof UsageError && message.test(e.message) && !e.message.includes("\n"),
      sets.join(" "),
    );
  }
  const noCategories = { ...side(true), numCategories: 1, itemCategory: new Int32Array(13) };
  assert.throws(
    () => createModel(resolveConfig(null, ["model=nova"]), noCategories, new Rng(1), () => {}),
    /no item categories/,
  );
});

Deno.test("duaf train --model nova / difsr on beauty-mini: the loss falls, eval reopens", async () => {
  const root = await Deno.makeTempDir({ prefix: "duaf-side-info-" });
  try {
    const ds = await tinyDataset(root);
    const runs: [string, string[]][] = [
      ["nova", ["novaAttributes=category,text"]],
      ["difsr", ["difsrAttributeHidden=16", "trainMode=window"]],
    ];
    for (const [i, [model, extra]] of runs.entries()) {
      const out = join(root, `run-${i}`);
      const sets = [...TINY_SETS, "epochs=3", "lr=0.005", `model=${model}`, ...extra];
      const r = await runCli(tinyTrainArgs(ds, out, sets));
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).status, "finished");
      const manifest = JSON.parse(await Deno.readTextFile(join(out, "manifest.json")));
      const history = manifest.history as { loss: Record<string, number> }[];
      const [first, last] = [history[0].loss, history[history.length - 1].loss];
      assert.ok(last.main < first.main, `${model} ${extra}: main ${first.main} -> ${last.main}`);
      if (model === "difsr") {
        assert.ok(
          last.attr_category < first.attr_category,
          `attr ${first.attr_category} -> ${last.attr_category}`,
        );
      }
      if (i === 0) {
        const e = await runCli(["eval", out, "--backend", "wasm", "--quiet"]);
        assert.equal(e.code, 0, e.stderr);
      }
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
