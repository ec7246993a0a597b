// The ONNX graph builder: serialized models read back field by field, run in onnxruntime-web
// with the expected numbers, and the committed fixtures are exactly what the scripts generate.
import assert from "node:assert/strict";
import { join } from "node:path";
import { attr, OnnxGraphBuilder, readOnnxModel, tensor } from "../core/export/onnx_graph.ts";
import { createSession, inputDims, ortTensor, runFloat } from "../core/features/ort.ts";
import { tinyEncoderFiles } from "../tools/make_tiny_encoders.ts";
import { testImageFiles } from "../tools/make_test_images.ts";

/** y = Gemm(x, w^T, b; alpha) then ReduceSum over axis 1, with a symbolic batch dim. */
function gemmModel(): Uint8Array {
  const g = new OnnxGraphBuilder("gemm_test");
  g.input("x", "float32", ["batch", 3]);
  g.initializer("w", tensor("float32", [2, 3], [1, 0, -1, 2, 1, 0])); // [out, in]: transB
  g.initializer("b", tensor("float32", [2], [0.5, -0.5]));
  g.initializer("axes", tensor("int64", [1], [1]));
  g.node("Gemm", ["x", "w", "b"], ["y"], { alpha: attr.float(2), transB: attr.int(1) });
  g.node("ReduceSum", ["y", "axes"], ["s"], { keepdims: attr.int(0) });
  g.output("y", "float32", ["batch", 2]);
  g.output("s", "float32", ["batch"]);
  return g.toBytes({ opset: 17, producerVersion: "test", metadata: { purpose: "test" } });
}

Deno.test("onnx graph: serialized model reads back with dims, attributes and weights", () => {
  const m = readOnnxModel(gemmModel());
  assert.equal(m.irVersion, 8);
  assert.equal(m.opset, 17);
  assert.equal(m.producerName, "duaf");
  assert.deepEqual(m.metadata, { purpose: "test" });
  assert.deepEqual(m.inputs, [{ name: "x", dtype: "float32", shape: ["batch", 3] }]);
  assert.deepEqual(m.outputs.map((o) => o.shape), [["batch", 2], ["batch"]]);
  assert.deepEqual(m.nodes.map((n) => n.opType), ["Gemm", "ReduceSum"]);
  assert.deepEqual(m.nodes[0].inputs, ["x", "w", "b"]);
  assert.equal(m.nodes[0].attributes.alpha, 2);
  assert.equal(m.nodes[0].attributes.transB, 1);
  assert.deepEqual([...(m.initializers.get("w")!.data as Float32Array)], [1, 0, -1, 2, 1, 0]);
  assert.deepEqual(m.initializers.get("axes")!.data, BigInt64Array.from([1n]));
  assert.equal(m.initializers.get("axes")!.dtype, "int64");
});

Deno.test("onnx graph: onnxruntime-web runs the built model", async () => {
  const session = await createSession(gemmModel());
  assert.deepEqual(inputDims(session, "x"), [null, 3]);
  const x = Float32Array.from([1, 2, 3, -1, 0, 1]);
  const out = await runFloat(session, { x: ortTensor("float32", x, [2, 3]) });
  // y = 2 * x @ w^T + b: row 1 [1,2,3] -> [2*(1-3)+0.5, 2*(2+2)-0.5] = [-3.5, 7.5].
  assert.deepEqual([...out.get("y")!.data], [-3.5, 7.5, 2 * -2 + 0.5, 2 * -2 - 0.5]);
  assert.deepEqual(out.get("y")!.dims, [2, 2]);
  assert.deepEqual([...out.get("s")!.data], [4, -8]);
  await session.release();
});

Deno.test("onnx graph: int32 tensors, attribute kinds and misuse", () => {
  const g = new OnnxGraphBuilder("misc");
  g.input("x", "int32", [4]);
  g.initializer("k", tensor("int32", [2, 2], Int32Array.from([1, -2, 3, -4])));
  g.node("Identity", ["x"], ["y"], {
    f: attr.floats([0.5, 1.5]),
    i: attr.ints([3, 4]),
    s: attr.string("hello"),
    t: attr.tensor(tensor("float32", [1], [2.5])),
  });
  g.output("y", "int32", [4]);
  assert.throws(() => g.input("x", "int32", [1]), /used twice/);
  assert.throws(() => g.node("Relu", ["nope"], ["z"]), /before anything defines it/);
  const incomplete = new OnnxGraphBuilder("incomplete");
  incomplete.output("missing", "float32", [1]);
  assert.throws(() => incomplete.toBytes({ opset: 17 }), /never computed/);
  assert.throws(() => tensor("float32", [2, 2], [1, 2, 3]), RangeError);
  assert.throws(() => tensor("int64", [1], Float32Array.from([1])), TypeError);
  const m = readOnnxModel(g.toBytes({ opset: 13 }));
  assert.deepEqual([...(m.initializers.get("k")!.data as Int32Array)], [1, -2, 3, -4]);
  const a = m.nodes[0].attributes;
  assert.deepEqual(a.f, [0.5, 1.5]);
  assert.deepEqual(a.i, [3, 4]);
  assert.equal(a.s, "hello");
  assert.deepEqual([...(a.t as { data: Float32Array }).data], [2.5]);
});

Deno.test("fixtures: committed encoders, vocabulary and images are what the scripts make", async () => {
  const dir = new URL("../fixtures/encoders/", import.meta.url).pathname;
  for (const [name, bytes] of tinyEncoderFiles()) {
    assert.deepEqual(await Deno.readFile(join(dir, name)), bytes, name);
    assert.ok(bytes.length < 200_000, `${name} is ${bytes.length} bytes`);
  }
  for (const [name, bytes] of testImageFiles()) {
    assert.deepEqual(await Deno.readFile(join(dir, "images", name)), bytes, name);
  }
});
