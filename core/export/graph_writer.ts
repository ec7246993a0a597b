/**
 * A thin layer over OnnxGraphBuilder for writing model graphs: fresh value names, cached
 * constants, weights taken from engine tensors (each stored once, however often it is read), and
 * the few composite ops every exported model needs (Linear, LayerNorm, exact GELU).
 *
 * Weights keep their torch parameter names and layouts, so an exported file reads next to the
 * checkpoint. Linear layers are Gemm on 2-D inputs (transB, bias included): sequence models keep
 * their hidden states as [batch * seq, d] so onnxruntime's fusions (bias + residual + LayerNorm,
 * bias + GELU) apply; a rank-3 MatMul followed by Add gets neither.
 */
import type { LayerNorm, Linear } from "../nn/layers.ts";
import type { Tensor } from "../tensor.ts";
import { attr, type AttrValue, type Dim, OnnxGraphBuilder, tensor } from "./onnx_graph.ts";

export class GraphWriter {
  readonly g: OnnxGraphBuilder;
  #counter = 0;
  readonly #consts = new Map<string, string>();
  readonly #weights = new Map<Tensor, string>();

  /** Outputs a model adds besides its scores, declared after them (see onnx_export.ts). */
  readonly extraOutputs: { name: string; value: string; shape: Dim[] }[] = [];

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

  /** An engine tensor as a float32 initializer named `name` (stored once however often read). */
  weight(name: string, t: Tensor): string {
    const seen = this.#weights.get(t);
    if (seen) return seen;
    this.#weights.set(t, this.table(name, [...t.shape], t.toFloat32()));
    return name;
  }

  /** Raw float32 data as an initializer (item-side tables computed at export time). */
  table(name: string, dims: number[], data: Float32Array): string {
    return this.g.initializer(name, tensor("float32", dims, data));
  }

  /** y = x W^T + b for x [rows, in]; `name` is the module's parameter prefix. */
  linear(x: string, lin: Linear, name: string): string {
    const inputs = [x, this.weight(`${name}.weight`, lin.weight)];
    if (lin.bias) inputs.push(this.weight(`${name}.bias`, lin.bias));
    return this.op("Gemm", inputs, { transB: attr.int(1) });
  }

  /** LayerNorm over the last axis (opset 17 LayerNormalization). */
  layerNorm(x: string, ln: LayerNorm, name: string): string {
    return this.op("LayerNormalization", [
      x,
      this.weight(`${name}.weight`, ln.weight),
      this.weight(`${name}.bias`, ln.bias),
    ], { axis: attr.int(-1), epsilon: attr.float(ln.eps) });
  }

  /**
   * The exact (erf) GELU the engine uses, x (1 + erf(x / √2)) 0.5, written in the node order
   * onnxruntime's GeluFusion recognises (Div, Erf, Add, Mul, Mul) so it runs as one kernel.
   */
  gelu(x: string): string {
    const e = this.op("Erf", [this.op("Div", [x, this.f32([Math.SQRT2], [])])]);
    const y = this.op("Mul", [x, this.op("Add", [e, this.f32([1], [])])]);
    return this.op("Mul", [y, this.f32([0.5], [])]);
  }
}
