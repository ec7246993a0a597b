/** DuAF-MAT: loss parts per switch, gradients of the whole loss, critic updates, explanations. */
import assert from "node:assert/strict";
import type { ItemSide } from "../core/models/item_side.ts";
import { Rng } from "../core/random.ts";
import { backward, tidy, withBackend } from "../core/tensor.ts";
import { JsBackend } from "../core/backends/js.ts";
import { f64 } from "./helpers/gradcheck.ts";
import { batch, ITEMS, itemSide, model } from "./helpers/tiny_duaf.ts";

Deno.test("duafmat: every switch yields its loss parts; no image turns MAT-MoE and CSCL off with a notice", () => {
  withBackend(new JsBackend(), () => {
    const rng = new Rng(1);
    const full = itemSide(rng, true);
    const b = batch(rng);
    const ctx = { training: true, rng: new Rng(5) };
    const cases: [Record<string, unknown>, ItemSide, string[]][] = [
      [{}, full, ["main", "cscl", "vscl", "adv"]],
      [{ cscl: false }, full, ["main", "vscl", "adv"]],
      [{ vscl: false }, full, ["main", "cscl", "adv"]],
      [{ matMoe: false, missingFill: "mean" }, full, ["main", "cscl", "vscl"]],
      [{ fusion: false }, full, ["main", "cscl", "vscl", "adv"]],
      [{}, itemSide(rng, false), ["main", "vscl"]],
      [{ modalities: [] }, full, ["main"]],
    ];
    for (const [over, items, parts] of cases) {
      const m = model(over, items);
      tidy(() => {
        const out = m.loss(b, ctx);
        assert.deepEqual(Object.keys(out.parts).sort(), [...parts].sort(), JSON.stringify(over));
        for (const v of Object.values(out.parts)) assert.ok(Number.isFinite(v.item()));
        backward(out.total);
      });
      if (!items.image && Object.keys(over).length === 0) {
        assert.ok(m.notices.some((n) => n.includes("MAT-MoE and CSCL switched off")));
      }
    }
  });
});

for (const fusionScore of ["eq7", "projected"]) {
  Deno.test(`duafmat: finite-difference check of the whole loss (fusion ${fusionScore}, MAT-MoE, CSCL, VSCL) on float64`, () => {
    withBackend(f64, () => {
      const rng = new Rng(2);
      const items = itemSide(rng, true);
      const b = batch(rng, 4, 4);
      const m = model({ modalityDropout: 0.5, poissonRate: 0.5, fusionScore }, items, "bce");
      // Read the loss in float64: item() would round it to float32.
      const lossAt = () =>
        tidy(() =>
          (m.loss(b, { training: true, rng: new Rng(9) }).total.storage as unknown as {
            data: Float64Array;
          }).data[0]
        );
      const params = m.trainableParameters();
      tidy(() => backward(m.loss(b, { training: true, rng: new Rng(9) }).total));
      const data = (t: { storage: unknown }) => (t.storage as { data: Float64Array }).data;
      let checked = 0;
      for (const [name, p] of m.namedParameters()) {
        if (!params.includes(p) || !p.grad) continue;
        const values = data(p);
        const grad = data(p.grad);
        for (const i of [0, Math.floor(p.size / 2), p.size - 1]) {
          const orig = values[i];
          values[i] = orig + 1e-6;
          const up = lossAt();
          values[i] = orig - 1e-6;
          const down = lossAt();
          values[i] = orig;
          const numeric = (up - down) / 2e-6;
          assert.ok(
            Math.abs(numeric - grad[i]) <= 1e-5 * Math.max(1, Math.abs(numeric)),
            `${name}[${i}]: analytic ${grad[i]} vs numeric ${numeric}`,
          );
          checked++;
        }
      }
      assert.ok(checked > 40, `checked ${checked} entries`);
    });
  });
}

Deno.test("duafmat: at initialisation Eq. 7's weights are flat, the projected score's are not", () => {
  withBackend(new JsBackend(), () => {
    const rng = new Rng(3);
    const items = itemSide(rng, true);
    const b = batch(rng);
    const spread = (fusionScore: string) => {
      const w = model({ fusionScore }, items).explain(b, { training: false, rng: new Rng(0) });
      let dev = 0;
      let n = 0;
      for (let r = 0; r < b.size; r++) {
        for (const step of w.perRow(r, b.lengths[r])) {
          for (const v of Object.values(step)) dev += Math.abs(v - 1 / 3), n++;
        }
      }
      return dev / n;
    };
    const eq7 = spread("eq7");
    const projected = spread("projected");
    assert.ok(eq7 < 0.01, `eq7 mean |ω - 1/3| ${eq7}`);
    assert.ok(projected > 0.05, `projected mean |ω - 1/3| ${projected}`);
  });
});

Deno.test("duafmat: critic steps change only the critic; inference fill is deterministic", () => {
  withBackend(new JsBackend(), () => {
    const rng = new Rng(4);
    const items = itemSide(rng, true);
    const b = batch(rng);
    const m = model({ criticSteps: 2 }, items);
    const critic = m.critic!.parameters().map((p) => p.toFloat32());
    const others = m.trainableParameters().map((p) => p.toFloat32());
    const out = m.afterStep(b, { training: true, rng: new Rng(1) });
    assert.ok(Number.isFinite(out.critic.item()));
    out.critic.dispose();
    assert.ok(
      m.critic!.parameters().some((p, i) => p.toFloat32().some((v, j) => v !== critic[i][j])),
    );
    m.trainableParameters().forEach((p, i) => assert.deepEqual(p.toFloat32(), others[i]));
    m.eval();
    const ctx = { training: false, rng: new Rng(0) };
    const s1 = tidy(() => m.scoreAll(b, ctx).toFloat32());
    const s2 = tidy(() => m.scoreAll(b, ctx).toFloat32());
    assert.deepEqual(s1, s2);
    assert.equal(s1.length, b.size * (ITEMS + 1));
  });
});

Deno.test("duafmat: explanations are per-step modality weights that sum to one", () => {
  withBackend(new JsBackend(), () => {
    const rng = new Rng(6);
    const items = itemSide(rng, true);
    const b = batch(rng);
    const m = model({}, items).eval();
    const w = m.explain(b, { training: false, rng: new Rng(0) });
    assert.deepEqual(w.modalities, ["id", "text", "image"]);
    const rows = w.perRow(1, b.lengths[1]);
    assert.equal(rows.length, b.lengths[1]);
    for (const r of rows) {
      const s = r.id + r.text + r.image;
      assert.ok(Math.abs(s - 1) < 1e-4, `weights sum to ${s}`);
    }
    // The time embedding matters: shifting time gaps changes the weights.
    const shifted = { ...b, times: b.times.map((t, i) => t * (1 + (i % 3))) };
    const rows2 = m.explain(shifted, { training: false, rng: new Rng(0) }).perRow(1, b.lengths[1]);
    assert.notDeepEqual(rows, rows2);
  });
});
