/**
 * Tensor, the engine state (active backend, memory scopes, grad mode) and the autograd tape.
 *
 * The tape lives here, above the backends: every differentiable op records a node holding its
 * inputs and a closure that maps the output gradient to input gradients using backend kernels.
 * Memory is managed with scopes (tfjs `tidy` style): tensors created inside `tidy` are freed
 * when it returns, except the returned ones and those passed to `keep` (parameters, optimizer
 * state). A training step is one scope, so a backend's arena is reused step after step.
 */
import type { Backend, DType, Storage } from "./backend.ts";
import { JsBackend } from "./backends/js.ts";

/** Reference-counted storage, so reshape views can share memory with their base. */
class Buffer {
  refs = 1;
  constructor(readonly backend: Backend, readonly storage: Storage) {}
  release(): void {
    if (--this.refs === 0) this.backend.free(this.storage);
  }
}

export interface TapeNode {
  readonly op: string;
  readonly inputs: readonly Tensor[];
  /**
   * Gradients for each input (null where an input needs none), from the output gradient. `into[j]`,
   * where given, is the sum of input j's gradients so far, a buffer the backward may add its
   * contribution to in place and return as input j's gradient (the sum with its contribution),
   * e.g. a product's store adding into it instead of a new buffer added afterwards.
   */
  readonly backward: (g: Tensor, into?: readonly (Tensor | undefined)[]) => (Tensor | null)[];
  /**
   * Tensors only this node's backward reads (a fused op's inner activations): a releasing
   * backward frees them with the node's output, as it frees the activations of separate ops.
   */
  readonly saved?: readonly Tensor[];
}

let currentBackend: Backend = new JsBackend();
const scopes: Set<Tensor>[] = [];
let gradEnabled = true;
let liveTensors = 0;

export function setBackend(b: Backend): void {
  currentBackend = b;
}
export function getBackend(): Backend {
  return currentBackend;
}
/** Runs fn with `b` as the active backend, restoring the previous one after. */
export function withBackend<T>(b: Backend, fn: () => T): T {
  const prev = currentBackend;
  currentBackend = b;
  try {
    return fn();
  } finally {
    currentBackend = prev;
  }
}

export function isGradEnabled(): boolean {
  return gradEnabled;
}
/** Runs fn without recording the tape (inference, optimizer updates, backward closures). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** Number of tensors not yet disposed (for leak tests). */
export function liveTensorCount(): number {
  return liveTensors;
}

export class Tensor {
  readonly shape: readonly number[];
  readonly size: number;
  readonly dtype: DType;
  #buf: Buffer | null;
  requiresGrad = false;
  grad: Tensor | null = null;
  node: TapeNode | null = null;

  constructor(shape: readonly number[], dtype: DType, buf: Buffer) {
    this.shape = shape;
    this.size = shape.reduce((p, d) => p * d, 1);
    this.dtype = dtype;
    this.#buf = buf;
    liveTensors++;
    if (scopes.length) scopes[scopes.length - 1].add(this);
  }

  get backend(): Backend {
    return this.#alive().backend;
  }
  get storage(): Storage {
    return this.#alive().storage;
  }
  get disposed(): boolean {
    return this.#buf === null;
  }
  /** Whether another tensor (a view) shares this one's memory. */
  get sharesStorage(): boolean {
    return this.#alive().refs > 1;
  }
  get rank(): number {
    return this.shape.length;
  }

  #alive(): Buffer {
    if (!this.#buf) throw new Error("tensor used after dispose");
    return this.#buf;
  }

  /** A tensor of another shape over the same memory (sizes must match). No tape node. */
  view(shape: readonly number[]): Tensor {
    const buf = this.#alive();
    buf.refs++;
    const t = new Tensor(shape, this.dtype, buf);
    if (t.size !== this.size) {
      t.dispose();
      throw new Error(`view: cannot view [${this.shape}] as [${shape}]`);
    }
    return t;
  }

  dispose(): void {
    if (!this.#buf) return;
    this.#buf.release();
    this.#buf = null;
    liveTensors--;
    for (const s of scopes) s.delete(this);
  }

  /** Host copy of the contents. */
  toArray(): Float32Array | Int32Array {
    return this.backend.download(this.storage, 0, this.size);
  }
  toFloat32(): Float32Array {
    if (this.dtype !== "f32") throw new Error("toFloat32 on an int32 tensor");
    return this.toArray() as Float32Array;
  }
  /** The single value of a one-element tensor. */
  item(): number {
    if (this.size !== 1) throw new Error(`item() on a tensor of shape [${this.shape}]`);
    return this.toArray()[0];
  }
}

/** Allocates an uninitialised tensor on the active backend. */
export function empty(shape: readonly number[], dtype: DType = "f32"): Tensor {
  const size = shape.reduce((p, d) => p * d, 1);
  const b = currentBackend;
  return new Tensor([...shape], dtype, new Buffer(b, b.alloc(size, dtype)));
}

export function zeros(shape: readonly number[], dtype: DType = "f32"): Tensor {
  const t = empty(shape, dtype);
  t.backend.fill(t.storage, 0);
  return t;
}

export function full(shape: readonly number[], value: number): Tensor {
  const t = empty(shape);
  t.backend.fill(t.storage, value);
  return t;
}

/** Uploads host data as a tensor of `shape` on the active backend. */
export function tensor(
  data: ArrayLike<number>,
  shape: readonly number[],
  dtype: DType = "f32",
): Tensor {
  const size = shape.reduce((p, d) => p * d, 1);
  if (data.length !== size) {
    throw new Error(`tensor: ${data.length} values for shape [${shape}]`);
  }
  // Backends copy on upload, so a typed array of the right kind goes as it is.
  const host = dtype === "i32"
    ? data instanceof Int32Array ? data : Int32Array.from(data)
    : data instanceof Float32Array
    ? data
    : Float32Array.from(data);
  const b = currentBackend;
  return new Tensor([...shape], dtype, new Buffer(b, b.upload(host, dtype)));
}

/** Removes t from every scope so it outlives them (parameters, optimizer state, caches). */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}

/**
 * Runs fn in a memory scope of its own and keeps what it returns: intermediates are disposed,
 * and the tensors of the result that fn created (not those it only passed through, such as
 * parameters) are returned as `owned`, outside every scope, for the caller to dispose.
 */
export function retained<T>(fn: () => T): { value: T; owned: Tensor[] } {
  const { value, created, survivors } = inScope(fn);
  const owned = [...created].filter((t) => survivors.has(t)).map((t) => keep(t));
  return { value, owned };
}

/**
 * fn in a new innermost scope; after it returns, the tensors it created that its result does not
 * reach are disposed, and survivors' tape nodes that would pin a disposed input are dropped.
 */
function inScope<T>(fn: () => T): { value: T; created: Set<Tensor>; survivors: Set<Tensor> } {
  const created = new Set<Tensor>();
  scopes.push(created);
  let value: T;
  try {
    value = fn();
  } finally {
    scopes.pop();
  }
  const survivors = new Set<Tensor>();
  collect(value, survivors);
  for (const t of created) {
    if (!survivors.has(t)) t.dispose();
  }
  // Tape nodes of survivors would pin disposed inputs: a scope's result is a value, not a graph.
  for (const t of survivors) if (t.node && t.node.inputs.some((i) => i.disposed)) t.node = null;
  return { value, created, survivors };
}

function collect(value: unknown, into: Set<Tensor>): void {
  if (value instanceof Tensor) into.add(value);
  else if (ArrayBuffer.isView(value)) return;
  else if (Array.isArray(value)) { for (const v of value) collect(v, into); }
  else if (value && typeof value === "object") {
    for (const v of Object.values(value)) collect(v, into);
  }
}

/**
 * Runs fn in a memory scope: tensors created inside are disposed when it returns, except those
 * reachable from its result (which move to the enclosing scope) and those passed to `keep`.
 */
export function tidy<T>(fn: () => T): T {
  const { value, created, survivors } = inScope(fn);
  // Only what this scope made moves out: a parameter or kept tensor the result holds stays
  // outside every scope (moved into the parent, the parent's end would dispose it).
  const parent = scopes[scopes.length - 1];
  if (parent) { for (const t of survivors) if (created.has(t) && !t.disposed) parent.add(t); }
  return value;
}

/** Strides of a flat, contiguous operand. */
const UNIT_STRIDE: readonly number[] = [1];

/** Records an op on the tape when grad mode is on and an input requires a gradient. */
export function record(
  out: Tensor,
  op: string,
  inputs: readonly Tensor[],
  backward: (g: Tensor, into?: readonly (Tensor | undefined)[]) => (Tensor | null)[],
  saved?: readonly Tensor[],
): Tensor {
  if (gradEnabled && inputs.some((t) => t.requiresGrad)) {
    out.requiresGrad = true;
    out.node = { op, inputs, backward, saved };
  }
  return out;
}

/**
 * Reverse-mode pass from a scalar (or from `seed` as the output gradient). Leaf tensors that
 * require a gradient accumulate into `.grad`, which is kept across scopes; intermediate
 * gradients live in the current scope.
 *
 * With `release`, the graph is consumed as it goes: each intermediate activation is freed right
 * after its own backward step (its consumers, later in the forward pass, have already run) and
 * each gradient as soon as nothing holds it. This roughly halves peak memory in training.
 */
export function backward(root: Tensor, seed?: Tensor, opts: { release?: boolean } = {}): void {
  if (!root.requiresGrad) throw new Error("backward: the output does not require a gradient");
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  // Iterative DFS post-order: sequence models produce deep graphs.
  const stack: [Tensor, number][] = [[root, 0]];
  seen.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [t, i] = top;
    const inputs = t.node?.inputs ?? [];
    if (i < inputs.length) {
      top[1]++;
      const child = inputs[i];
      if (child.requiresGrad && !seen.has(child)) {
        seen.add(child);
        stack.push([child, 0]);
      }
    } else {
      order.push(t);
      stack.pop();
    }
  }
  const release = opts.release ?? false;
  noGrad(() => {
    const grads = new Map<Tensor, Tensor>();
    // How many map entries hold each gradient tensor (one tensor can serve several inputs).
    const holders = new Map<Tensor, number>();
    const owned = new Set<Tensor>();
    const hold = (inp: Tensor, g: Tensor) => {
      grads.set(inp, g);
      holders.set(g, (holders.get(g) ?? 0) + 1);
    };
    const drop = (inp: Tensor) => {
      const g = grads.get(inp);
      if (!g) return;
      grads.delete(inp);
      holders.set(g, holders.get(g)! - 1);
    };
    const freeIfUnheld = (g: Tensor) => {
      if (release && g !== seed && !holders.get(g)) g.dispose();
    };
    hold(root, seed ?? full(root.shape, 1));
    for (let k = order.length - 1; k >= 0; k--) {
      const t = order[k];
      const g = grads.get(t);
      if (!g) continue;
      drop(t);
      if (!t.node) {
        // A leaf without a gradient takes a buffer nothing else uses as its own, saving the
        // fill and the add (the optimizer's zeroGrad leaves no gradient, as torch's does).
        if (!t.grad && g !== seed && !holders.get(g) && !g.sharesStorage) t.grad = keep(g);
        else {
          accumulateLeaf(t, g);
          freeIfUnheld(g);
        }
        continue;
      }
      const node = t.node;
      // Sums a backward may add into in place: buffers this input alone holds (as below), for
      // inputs the node reads once.
      const into = node.inputs.map((inp) => {
        const prev = grads.get(inp);
        return prev && owned.has(prev) && holders.get(prev) === 1 &&
            node.inputs.indexOf(inp) === node.inputs.lastIndexOf(inp)
          ? prev
          : undefined;
      });
      const inGrads = node.backward(g, into);
      node.inputs.forEach((inp, j) => {
        const gi = inGrads[j];
        if (!gi || !inp.requiresGrad) return;
        if (gi === into[j]) return; // the contribution is already in the sum
        if (gi.size !== inp.size) {
          throw new Error(
            `backward of ${node.op}: gradient [${gi.shape}] for input [${inp.shape}]`,
          );
        }
        const prev = grads.get(inp);
        if (!prev) {
          const held = sameShape(gi.shape, inp.shape) ? gi : gi.view(inp.shape);
          // A buffer the backward made for this input alone (not the upstream gradient, not a
          // view of another tensor, not handed to a second input) takes later contributions in
          // place: a tied embedding or a residual stream then adds into it instead of
          // allocating a third buffer for the sum.
          if (
            held === gi && gi !== g && !gi.sharesStorage &&
            inGrads.indexOf(gi) === inGrads.lastIndexOf(gi)
          ) owned.add(gi);
          hold(inp, held);
          return;
        }
        // A gradient may be shared (add's backward hands g to both inputs, an accumulated buffer
        // included), so a sum is added in place only into a buffer this input alone holds;
        // otherwise it goes to a new buffer, which later contributions then add into.
        if (owned.has(prev) && holders.get(prev) === 1) {
          inp.backend.axpy(gi.storage, prev.storage, gi.size, 1);
          return;
        }
        const acc = empty(inp.shape);
        const b = inp.backend;
        b.binary("add", prev.storage, UNIT_STRIDE, gi.storage, UNIT_STRIDE, acc.storage, [gi.size]);
        owned.add(acc);
        drop(inp);
        hold(inp, acc);
        freeIfUnheld(prev);
      });
      for (const gi of inGrads) if (gi && gi !== g) freeIfUnheld(gi);
      freeIfUnheld(g);
      if (release) {
        for (const s of node.saved ?? []) s.dispose();
        if (t !== root) {
          t.node = null;
          t.dispose();
        }
      }
    }
  });
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function accumulateLeaf(leaf: Tensor, g: Tensor): void {
  if (!leaf.grad) {
    leaf.grad = keep(zeros(leaf.shape));
  }
  leaf.backend.axpy(g.storage, leaf.grad.storage, g.size, 1);
}

/** Overwrites t's contents with host data (same size), e.g. when loading a checkpoint. */
export function assign(t: Tensor, data: Float32Array | Int32Array): void {
  if (data.length !== t.size) throw new Error(`assign: ${data.length} values into [${t.shape}]`);
  const b = t.backend;
  const tmp = b.upload(data, t.dtype);
  b.copy2d(tmp, 0, 0, t.storage, 0, 0, 1, t.size, false);
  b.free(tmp);
}
