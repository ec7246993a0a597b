/**
 * A thin layer over OnnxGraphBuilder for writing model graphs: fresh value names, cached
 * constants, weights taken from engine tensors (each stored once, however often it is read), and
 * the few composite ops every exported model needs (Linear, LayerNorm, exact GELU).
 *
 * Weights keep their torch parameter names so an exported file can be read next to the
 * checkpoint. Linear weights are stored transposed ([in, out], suffix ".T") so one MatMul serves
 * inputs of any rank; runtimes then fuse MatMul + Add themselves.
 */
import type { LayerNorm, Linear } from "../nn/layers.ts";
import type { Tensor } from "../tensor.ts";
import { attr, type AttrValue, OnnxGraphBuilder, tensor } from "./onnx_graph.ts";

export class GraphWriter {
  readonly g: OnnxGraphBuilder;
  #counter = 0;
  readonly #consts = new Map<string, string>();
  readonly #weights = new Map<Tensor, Map<boolean, string>>();
  readonly #weightNames = new Set<string>();

  constructor(name: string) {
    this.g = new OnnxGraphBuilder(name);
  }

  /** A value name no other value has; `hint` keeps graphs readable in viewers. */
  fresh(hint: string): string {
    return `/${hint}_${this.#counter++}`;
  }

  /** One node with one output; returns the output's name. */
  op(type: string, inputs: string[], attrs: Record<string, AttrValue> = {}, hint = type): string {
    return this.g.node(type, inputs, [this.fresh(hint)], attrs);
  }

  /** One node with `n` outputs. */
  opN(type: string, inputs: string[], n: number, attrs: Record<string, AttrValue> = {}): string[] {
    const outs = Array.from({ length: n }, () => this.fresh(type));
    this.g.node(type, inputs, outs, attrs);
    return outs;
  }

  /** An int64 constant (scalar when `dims` is []), created once per distinct value. */
  i64(values: number[], dims: number[] = [values.length]): string {
    return this.#constant("int64", values, dims);
  }

  /** A float32 constant, created once per distinct value. */
  f32(values: number[], dims: number[] = [values.length]): string {
    return this.#constant("float32", values, dims);
  }

  #constant(dtype: "int64" | "float32", values: number[], dims: number[]): string {
    const key = `${dtype}:${dims.join("x")}:${values.join(",")}`;
    let name = this.#consts.get(key);
    if (!name) {
      name = this.g.initializer(this.fresh(`const_${dtype}`), tensor(dtype, dims, values));
      this.#consts.set(key, name);
    }
    return name;
  }

  /** An engine tensor as a float32 initializer named `name` (transposed 2-D when asked). */
  weight(name: string, t: Tensor, transpose = false): string {
    const seen = this.#weights.get(t)?.get(transpose);
    if (seen) return seen;
    const full = transpose ? `${name}.T` : name;
    if (this.#weightNames.has(full)) throw new Error(`export: weight name ${full} is used twice`);
    let data = t.toFloat32();
    let dims = [...t.shape];
    if (transpose) {
      if (dims.length !== 2) throw new Error(`export: cannot transpose ${name} [${dims}]`);
      const [r, c] = dims;
      const out = new Float32Array(r * c);
      for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = data[i * c + j];
      data = out;
      dims = [c, r];
    }
    this.g.initializer(full, tensor("float32", dims, data));
    this.#weightNames.add(full);
    if (!this.#weights.has(t)) this.#weights.set(t, new Map());
    this.#weights.get(t)!.set(transpose, full);
    return full;
  }

  /** Raw float32 data as an initializer (item-side tables computed at export time). */
  table(name: string, dims: number[], data: Float32Array): string {
    if (this.#weightNames.has(name)) throw new Error(`export: table name ${name} is used twice`);
    this.#weightNames.add(name);
    return this.g.initializer(name, tensor("float32", dims, data));
  }

  /** y = x W^T + b for x of any rank [..., in]; `name` is the module's parameter prefix. */
  linear(x: string, lin: Linear, name: string): string {
    const y = this.op("MatMul", [x, this.weight(`${name}.weight`, lin.weight, true)]);
    return lin.bias ? this.op("Add", [y, this.weight(`${name}.bias`, lin.bias)]) : y;
  }

  /** LayerNorm over the last axis (opset 17 LayerNormalization). */
  layerNorm(x: string, ln: LayerNorm, name: string): string {
    return this.op("LayerNormalization", [
      x,
      this.weight(`${name}.weight`, ln.weight),
      this.weight(`${name}.bias`, ln.bias),
    ], { axis: attr.int(-1), epsilon: attr.float(ln.eps) });
  }

  /** The exact (erf) GELU the engine uses: 0.5 x (1 + erf(x / √2)). */
  gelu(x: string): string {
    const e = this.op("Erf", [this.op("Mul", [x, this.f32([Math.SQRT1_2], [])])]);
    const half = this.op("Mul", [x, this.f32([0.5], [])]);
    return this.op("Mul", [half, this.op("Add", [e, this.f32([1], [])])]);
  }
}
