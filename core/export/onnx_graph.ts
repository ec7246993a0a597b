/**
 * A small ONNX graph builder and reader: tensors and initializers (float32, int64, int32), nodes
 * with attributes, graph inputs/outputs with fixed or symbolic (dim_param) dimensions, opset
 * import, and serialization to ModelProto bytes. It serves the test encoders in fixtures/encoders
 * and `duaf export`.
 *
 * The wire format comes from protobufjs with the subset of onnx.proto below; field numbers are
 * those of the official onnx/onnx.proto (IR version 8-10), so the output loads in any runtime.
 */
import protobuf from "protobufjs";

const ONNX_PROTO_SUBSET = `
syntax = "proto3";
package onnx;
message AttributeProto {
  string name = 1;
  float f = 2;
  int64 i = 3;
  bytes s = 4;
  TensorProto t = 5;
  repeated float floats = 7;
  repeated int64 ints = 8;
  repeated bytes strings = 9;
  string doc_string = 13;
  int32 type = 20;
}
message ValueInfoProto {
  string name = 1;
  TypeProto type = 2;
  string doc_string = 3;
}
message NodeProto {
  repeated string input = 1;
  repeated string output = 2;
  string name = 3;
  string op_type = 4;
  repeated AttributeProto attribute = 5;
  string doc_string = 6;
  string domain = 7;
}
message StringStringEntryProto {
  string key = 1;
  string value = 2;
}
message ModelProto {
  int64 ir_version = 1;
  string producer_name = 2;
  string producer_version = 3;
  string domain = 4;
  int64 model_version = 5;
  string doc_string = 6;
  GraphProto graph = 7;
  repeated OperatorSetIdProto opset_import = 8;
  repeated StringStringEntryProto metadata_props = 14;
}
message GraphProto {
  repeated NodeProto node = 1;
  string name = 2;
  repeated TensorProto initializer = 5;
  string doc_string = 10;
  repeated ValueInfoProto input = 11;
  repeated ValueInfoProto output = 12;
  repeated ValueInfoProto value_info = 13;
}
message TensorProto {
  repeated int64 dims = 1;
  int32 data_type = 2;
  repeated float float_data = 4 [packed = true];
  repeated int32 int32_data = 5 [packed = true];
  repeated int64 int64_data = 7 [packed = true];
  string name = 8;
  bytes raw_data = 9;
  string doc_string = 12;
}
message TensorShapeProto {
  message Dimension {
    oneof value {
      int64 dim_value = 1;
      string dim_param = 2;
    }
    string denotation = 3;
  }
  repeated Dimension dim = 1;
}
message TypeProto {
  message Tensor {
    int32 elem_type = 1;
    TensorShapeProto shape = 2;
  }
  oneof value {
    Tensor tensor_type = 1;
  }
  string denotation = 6;
}
message OperatorSetIdProto {
  string domain = 1;
  int64 version = 2;
}
`;

const root = protobuf.parse(ONNX_PROTO_SUBSET, { keepCase: true }).root;
const ModelProto = root.lookupType("onnx.ModelProto");

/** Element types this builder writes; the numbers are onnx.TensorProto.DataType codes. */
export type OnnxDType = "float32" | "int32" | "int64";
const DTYPE_CODE: Record<OnnxDType, number> = { float32: 1, int32: 6, int64: 7 };
const CODE_DTYPE = new Map<number, OnnxDType>(
  Object.entries(DTYPE_CODE).map(([k, v]) => [v, k as OnnxDType]),
);

export type TensorData = Float32Array | Int32Array | BigInt64Array;

/** A constant tensor: an initializer, or the value of a tensor attribute. */
export interface OnnxTensor {
  dtype: OnnxDType;
  dims: number[];
  data: TensorData;
}

/** One dimension of a graph input/output: a fixed size or a symbolic name such as "batch". */
export type Dim = number | string;

/** Node attribute values, tagged because ONNX distinguishes int from float. */
export type AttrValue =
  | { kind: "int"; value: number }
  | { kind: "float"; value: number }
  | { kind: "string"; value: string }
  | { kind: "ints"; value: number[] }
  | { kind: "floats"; value: number[] }
  | { kind: "tensor"; value: OnnxTensor };

export const attr = {
  int: (value: number): AttrValue => ({ kind: "int", value }),
  float: (value: number): AttrValue => ({ kind: "float", value }),
  string: (value: string): AttrValue => ({ kind: "string", value }),
  ints: (value: number[]): AttrValue => ({ kind: "ints", value }),
  floats: (value: number[]): AttrValue => ({ kind: "floats", value }),
  tensor: (value: OnnxTensor): AttrValue => ({ kind: "tensor", value }),
};

// onnx.AttributeProto.AttributeType codes.
const ATTR_TYPE = { float: 1, int: 2, string: 3, tensor: 4, floats: 6, ints: 7 } as const;

/** The typed array of each element type. */
const ARRAY_TYPE = { float32: Float32Array, int32: Int32Array, int64: BigInt64Array } as const;

/** Values of `dtype` from numbers (converted) or from a buffer (viewed, not copied). */
function typedData(dtype: OnnxDType, src: number[] | ArrayBuffer): TensorData {
  if (src instanceof ArrayBuffer) return new ARRAY_TYPE[dtype](src);
  return dtype === "int64"
    ? BigInt64Array.from(src, (v) => BigInt(v))
    : ARRAY_TYPE[dtype].from(src);
}

/** Makes a tensor, checking that the data length matches the dims. */
export function tensor(dtype: OnnxDType, dims: number[], data: TensorData | number[]): OnnxTensor {
  const n = dims.reduce((a, b) => a * b, 1);
  const typed = Array.isArray(data) ? typedData(dtype, data) : data;
  const expected = ARRAY_TYPE[dtype];
  if (!(typed instanceof expected)) throw new TypeError(`tensor: ${dtype} needs ${expected.name}`);
  if (typed.length !== n) {
    throw new RangeError(`tensor: dims [${dims}] need ${n} values, got ${typed.length}`);
  }
  return { dtype, dims: [...dims], data: typed };
}

// ONNX raw_data is little-endian, like every platform Deno runs on, so the typed array's bytes
// are copied as they are.
function tensorProto(name: string, t: OnnxTensor): Record<string, unknown> {
  const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength).slice();
  return { name, dims: t.dims, data_type: DTYPE_CODE[t.dtype], raw_data: bytes };
}

function valueInfo(name: string, dtype: OnnxDType, shape: Dim[]): Record<string, unknown> {
  return {
    name,
    type: {
      tensor_type: {
        elem_type: DTYPE_CODE[dtype],
        shape: {
          dim: shape.map((d) => typeof d === "number" ? { dim_value: d } : { dim_param: d }),
        },
      },
    },
  };
}

function attributeProto(name: string, a: AttrValue): Record<string, unknown> {
  const base = { name, type: ATTR_TYPE[a.kind] };
  switch (a.kind) {
    case "int":
      return { ...base, i: a.value };
    case "float":
      return { ...base, f: a.value };
    case "string":
      return { ...base, s: new TextEncoder().encode(a.value) };
    case "ints":
      return { ...base, ints: a.value };
    case "floats":
      return { ...base, floats: a.value };
    case "tensor":
      return { ...base, t: tensorProto("", a.value) };
  }
}

export interface ModelOptions {
  /** Default-domain opset version (e.g. 17). */
  opset: number;
  /** IR version; 8 suits opsets 13-17. */
  irVersion?: number;
  producerName?: string;
  producerVersion?: string;
  docString?: string;
  /** Stored as ModelProto.metadata_props. */
  metadata?: Record<string, string>;
}

/** Collects a graph, then serializes it as an ONNX ModelProto. Names must be unique. */
export class OnnxGraphBuilder {
  readonly #name: string;
  readonly #inputs: Record<string, unknown>[] = [];
  readonly #outputs: Record<string, unknown>[] = [];
  readonly #initializers: Record<string, unknown>[] = [];
  readonly #nodes: Record<string, unknown>[] = [];
  readonly #names = new Set<string>();

  constructor(name: string) {
    this.#name = name;
  }

  #claim(name: string): string {
    if (this.#names.has(name)) throw new Error(`onnx graph: name "${name}" is used twice`);
    this.#names.add(name);
    return name;
  }

  /** Declares a graph input; returns its name for use as a node input. */
  input(name: string, dtype: OnnxDType, shape: Dim[]): string {
    this.#inputs.push(valueInfo(this.#claim(name), dtype, shape));
    return name;
  }

  /** Declares a graph output (some node must produce `name`). */
  output(name: string, dtype: OnnxDType, shape: Dim[]): string {
    this.#outputs.push(valueInfo(name, dtype, shape));
    return name;
  }

  /** Adds a constant weight; returns its name. */
  initializer(name: string, t: OnnxTensor): string {
    this.#initializers.push(tensorProto(this.#claim(name), t));
    return name;
  }

  /**
   * Adds a node; `inputs` must already exist ("" skips an optional input), so nodes come in
   * topological order as ONNX requires. `outputs` are new value names. Returns the first output.
   */
  node(
    opType: string,
    inputs: string[],
    outputs: string[],
    attributes: Record<string, AttrValue> = {},
    name?: string,
  ): string {
    for (const i of inputs) {
      if (i !== "" && !this.#names.has(i)) {
        throw new Error(`onnx graph: ${opType} reads "${i}" before anything defines it`);
      }
    }
    for (const o of outputs) this.#claim(o);
    this.#nodes.push({
      op_type: opType,
      input: inputs,
      output: outputs,
      name: name ?? `${opType}_${this.#nodes.length}`,
      attribute: Object.entries(attributes).map(([k, v]) => attributeProto(k, v)),
    });
    return outputs[0];
  }

  /** Serializes the model (deterministic: the same graph gives the same bytes). */
  toBytes(opts: ModelOptions): Uint8Array {
    for (const o of this.#outputs) {
      if (!this.#names.has(o.name as string)) {
        throw new Error(`onnx graph: output "${o.name}" is never computed`);
      }
    }
    const model = {
      ir_version: opts.irVersion ?? 8,
      producer_name: opts.producerName ?? "duaf",
      producer_version: opts.producerVersion ?? "",
      doc_string: opts.docString ?? "",
      opset_import: [{ domain: "", version: opts.opset }],
      metadata_props: Object.entries(opts.metadata ?? {}).map(([key, value]) => ({ key, value })),
      graph: {
        name: this.#name,
        node: this.#nodes,
        initializer: this.#initializers,
        input: this.#inputs,
        output: this.#outputs,
      },
    };
    const err = ModelProto.verify(model);
    if (err) throw new Error(`onnx graph: ${err}`);
    const bytes = ModelProto.encode(ModelProto.fromObject(model)).finish();
    // protobufjs hands out a Node Buffer under Deno; return a plain Uint8Array view.
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
}

// ---- reading back (tests, and checking exported models) ----

export interface OnnxValueInfo {
  name: string;
  dtype: OnnxDType | number;
  shape: Dim[];
}

export interface OnnxNode {
  opType: string;
  inputs: string[];
  outputs: string[];
  attributes: Record<string, unknown>;
}

export interface OnnxModel {
  irVersion: number;
  opset: number;
  producerName: string;
  metadata: Record<string, string>;
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
  nodes: OnnxNode[];
  initializers: Map<string, OnnxTensor>;
}

function readTensor(t: Record<string, unknown>): OnnxTensor {
  const dtype = CODE_DTYPE.get(t.data_type as number);
  if (!dtype) throw new Error(`onnx: tensor "${t.name}" has unsupported data type ${t.data_type}`);
  const dims = ((t.dims as number[]) ?? []).map(Number);
  const raw = t.raw_data as Uint8Array | undefined;
  if (raw && raw.length > 0) {
    // A copy: protobufjs may hand out pooled views.
    return tensor(dtype, dims, typedData(dtype, new Uint8Array(raw).buffer));
  }
  const values = dtype === "float32"
    ? t.float_data
    : dtype === "int32"
    ? t.int32_data
    : (t.int64_data as (number | string)[] | undefined)?.map(Number);
  return tensor(dtype, dims, (values as number[] | undefined) ?? []);
}

function readValueInfo(v: Record<string, unknown>): OnnxValueInfo {
  const tt = (v.type as { tensor_type?: { elem_type: number; shape?: { dim?: unknown[] } } })
    ?.tensor_type;
  const code = tt?.elem_type ?? 0;
  const dims = (tt?.shape?.dim ?? []) as { dim_value?: number; dim_param?: string }[];
  return {
    name: v.name as string,
    dtype: CODE_DTYPE.get(code) ?? code,
    shape: dims.map((d) => d.dim_param !== undefined ? d.dim_param : Number(d.dim_value ?? 0)),
  };
}

/** Decodes a serialized model into plain values (initializers as typed arrays). */
export function readOnnxModel(bytes: Uint8Array): OnnxModel {
  const obj = ModelProto.toObject(ModelProto.decode(bytes), {
    longs: Number,
    bytes: Uint8Array,
    defaults: true,
    arrays: true,
    oneofs: false,
  }) as Record<string, unknown>;
  const graph = (obj.graph ?? {}) as Record<string, unknown[]>;
  const opsets = obj.opset_import as { domain: string; version: number }[];
  const initializers = new Map<string, OnnxTensor>();
  for (const t of graph.initializer as Record<string, unknown>[]) {
    initializers.set(t.name as string, readTensor(t));
  }
  return {
    irVersion: obj.ir_version as number,
    opset: opsets.find((o) => o.domain === "")?.version ?? 0,
    producerName: obj.producer_name as string,
    metadata: Object.fromEntries(
      (obj.metadata_props as { key: string; value: string }[]).map((e) => [e.key, e.value]),
    ),
    inputs: (graph.input as Record<string, unknown>[]).map(readValueInfo),
    outputs: (graph.output as Record<string, unknown>[]).map(readValueInfo),
    nodes: (graph.node as Record<string, unknown>[]).map((n) => ({
      opType: n.op_type as string,
      inputs: n.input as string[],
      outputs: n.output as string[],
      attributes: Object.fromEntries(
        (n.attribute as Record<string, unknown>[]).map((a) => [a.name as string, attrValue(a)]),
      ),
    })),
    initializers,
  };
}

function attrValue(a: Record<string, unknown>): unknown {
  switch (a.type) {
    case ATTR_TYPE.float:
      return a.f;
    case ATTR_TYPE.int:
      return a.i;
    case ATTR_TYPE.string:
      return new TextDecoder().decode(a.s as Uint8Array);
    case ATTR_TYPE.floats:
      return a.floats;
    case ATTR_TYPE.ints:
      return a.ints;
    case ATTR_TYPE.tensor:
      return readTensor(a.t as Record<string, unknown>);
    default:
      return undefined;
  }
}

/**
 * ModelProto.metadata_props alone, without decoding the graph (its weights are skipped over):
 * cheap enough to call on every model a command opens.
 */
export function readOnnxMetadata(bytes: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {};
  const r = protobuf.Reader.create(bytes);
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag >>> 3 === 14 && (tag & 7) === 2) {
      const entry = protobuf.Reader.create(r.bytes());
      let key = "";
      let value = "";
      while (entry.pos < entry.len) {
        const t = entry.uint32();
        if (t >>> 3 === 1 && (t & 7) === 2) key = entry.string();
        else if (t >>> 3 === 2 && (t & 7) === 2) value = entry.string();
        else entry.skipType(t & 7);
      }
      out[key] = value;
    } else r.skipType(tag & 7);
  }
  return out;
}
