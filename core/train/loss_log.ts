/**
 * The loss parts of an epoch's steps, kept on the backend until they are read.
 *
 * Reading a scalar waits for all queued device work, so reading each step's loss as it is made
 * would stall an asynchronous backend (cuda) twice a step: the forward pass would finish before
 * the backward pass is queued. The log copies each value into a device buffer instead (one
 * copy2d per value, no wait) and downloads the buffer when the trainer asks for the numbers.
 * Sums are formed on the host in float64, step by step in the order the values were recorded,
 * which is exactly what reading each value at once would give.
 */
import { empty, keep, type Tensor } from "../tensor.ts";

interface Entry {
  key: string;
  /** Multiplier of a micro-batch's value; null for a step-level value that replaces, not adds. */
  weight: number | null;
  slot: number;
}

export class LossLog {
  #capacity: number;
  #buffer: Tensor | null = null;
  /** Entries of the steps recorded since the last read; one array per step. */
  #steps: Entry[][] = [];
  #used = 0;
  /** Parts of the last step read. */
  last: Record<string, number> = {};

  constructor(capacity = 256) {
    this.#capacity = capacity;
  }

  /** Starts a new step's entries. */
  beginStep(): void {
    this.#steps.push([]);
  }

  /**
   * Records a micro-batch's loss parts (scalars) with its weight in the step's mean; the
   * step's value of a part is the weighted sum over its micro-batches.
   */
  addWeighted(parts: Record<string, Tensor>, weight: number): void {
    for (const [key, t] of Object.entries(parts)) this.#push(key, t, weight);
  }

  /** Records step-level values (after the micro-batches; a key here replaces theirs). */
  addStep(values: Record<string, Tensor>): void {
    for (const [key, t] of Object.entries(values)) this.#push(key, t, null);
  }

  /**
   * Downloads what was recorded and adds each step's parts to `sums` in step order; `last`
   * becomes the final step's parts.
   */
  drainInto(sums: Record<string, number>): void {
    if (!this.#steps.length) return;
    const values = this.#used ? this.#buffer!.toFloat32() : new Float32Array(0);
    for (const entries of this.#steps) {
      const micro: Record<string, number> = {};
      const step: Record<string, number> = {};
      for (const e of entries) {
        const v = values[e.slot];
        if (e.weight === null) step[e.key] = v;
        else micro[e.key] = (micro[e.key] ?? 0) + e.weight * v;
      }
      const parts = { ...micro, ...step };
      for (const [k, v] of Object.entries(parts)) sums[k] = (sums[k] ?? 0) + v;
      this.last = parts;
    }
    this.#steps = [];
    this.#used = 0;
  }

  /** Values recorded since the last drain. */
  get pending(): number {
    return this.#used;
  }

  /** Frees the device buffer. */
  dispose(): void {
    this.#buffer?.dispose();
    this.#buffer = null;
  }

  #push(key: string, t: Tensor, weight: number | null): void {
    if (t.size !== 1 || t.dtype !== "f32") {
      throw new Error(`loss part '${key}' is not a float scalar (shape [${t.shape}])`);
    }
    if (!this.#steps.length) this.beginStep();
    if (!this.#buffer) this.#buffer = keep(empty([this.#capacity]));
    // A full buffer grows rather than drains: a drain mid-step would split the step's sums.
    if (this.#used === this.#capacity) {
      const bigger = keep(empty([this.#capacity * 2]));
      bigger.backend.copy2d(this.#buffer.storage, 0, 0, bigger.storage, 0, 0, 1, this.#used, false);
      this.#buffer.dispose();
      this.#buffer = bigger;
      this.#capacity *= 2;
    }
    const slot = this.#used++;
    t.backend.copy2d(t.storage, 0, 1, this.#buffer.storage, slot, 1, 1, 1, false);
    this.#steps[this.#steps.length - 1].push({ key, weight, slot });
  }
}
