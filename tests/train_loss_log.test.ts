/** The trainer's loss log: sums equal reading each value at once, and nothing is read early. */
import assert from "node:assert/strict";
import { JsBackend } from "../core/backends/js.ts";
import { Rng } from "../core/random.ts";
import { LossLog } from "../core/train/loss_log.ts";
import { liveTensorCount, type Tensor, tensor, tidy, withBackend } from "../core/tensor.ts";

/** Counts downloads: each one is a wait for the device on an asynchronous backend. */
class CountingBackend extends JsBackend {
  downloads = 0;
  override download(...args: Parameters<JsBackend["download"]>) {
    this.downloads++;
    return super.download(...args);
  }
}

const scalar = (v: number): Tensor => tensor(Float32Array.of(v), [1]);

Deno.test("loss log: per-step sums match immediate reads, over growth and without early reads", () => {
  const be = new CountingBackend();
  withBackend(be, () => {
    const live = liveTensorCount();
    const rng = new Rng(3);
    const log = new LossLog(4); // small, so recording grows the buffer several times
    const want: Record<string, number> = {};
    const got: Record<string, number> = {};
    let lastWant: Record<string, number> = {};
    for (let step = 0; step < 9; step++) {
      log.beginStep();
      const micro: Record<string, number> = {};
      const weights = step % 3 === 0 ? [0.25, 0.5, 0.25] : [1];
      for (const w of weights) {
        tidy(() => {
          const parts = { main: scalar(rng.uniform() * 10), vscl: scalar(rng.uniform()) };
          for (const [k, t] of Object.entries(parts)) {
            micro[k] = (micro[k] ?? 0) + w * Math.fround(t.item());
          }
          log.addWeighted(parts, w);
        });
      }
      const critic = scalar(rng.uniform() - 0.5);
      const extra: Record<string, number> = step % 2 ? { critic: Math.fround(critic.item()) } : {};
      log.addStep(step % 2 ? { critic } : {});
      critic.dispose();
      lastWant = { ...micro, ...extra };
      for (const [k, v] of Object.entries(lastWant)) want[k] = (want[k] ?? 0) + v;
      if (step === 4) {
        // A drain in the middle of the epoch carries on where it stopped.
        log.drainInto(got);
        assert.equal(log.pending, 0);
      }
    }
    const before = be.downloads;
    assert.ok(log.pending > 4, "values recorded past the initial capacity");
    log.drainInto(got);
    assert.equal(be.downloads - before, 1, "one read for all steps since the last drain");
    assert.deepEqual(got, want);
    assert.deepEqual(log.last, lastWant);
    log.drainInto(got); // nothing new: no read, no change
    assert.equal(be.downloads - before, 1);
    assert.deepEqual(got, want);
    log.dispose();
    assert.equal(liveTensorCount(), live, "the log's buffer is freed");
  });
});

Deno.test("loss log: a non-scalar part is refused by name", () => {
  withBackend(new JsBackend(), () => {
    const log = new LossLog();
    const t = tensor(new Float32Array(2), [2]);
    assert.throws(() => log.addWeighted({ main: t }, 1), /loss part 'main' is not a float scalar/);
    t.dispose();
    log.dispose();
  });
});
