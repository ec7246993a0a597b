/** The profiler's categories: every kind a profiled run reports lands in the right one. */
import assert from "node:assert/strict";
import { gemmArgs } from "../core/backend.ts";
import { JsBackend } from "../core/backends/js.ts";
import { categoryOf, formatCategories, profiled } from "../core/backends/profiling.ts";

Deno.test("categoryOf: plain and shaped GEMM kinds are GEMM", () => {
  assert.equal(categoryOf("gemm"), "GEMM");
  assert.equal(categoryOf("gemm 1x[6400x64]@[64x1683]tB"), "GEMM");
  assert.equal(categoryOf("gemm 256x[50x32]@[32x50]tAtB"), "GEMM");
  assert.equal(categoryOf("unary:gelu"), "elementwise");
  assert.equal(categoryOf("softmax:log"), "CE (loss over items)");
  assert.equal(categoryOf("maskedSoftmax"), "attention (softmax, fused)");
  assert.equal(categoryOf("softmaxGrad"), "attention (softmax, fused)");
  assert.equal(categoryOf("permute"), "copy/transpose/fill");
  assert.equal(categoryOf("rankScores"), "ranking (eval)");
  assert.equal(categoryOf("rankRows"), "ranking (eval)");
});

Deno.test("profiled: with gemmShapes the category table still counts GEMMs as GEMM", () => {
  const p = profiled(new JsBackend(), { sync: true, gemmShapes: true });
  const be = p.backend;
  p.phase("train");
  const a = be.upload(new Float32Array(6), "f32");
  const c = be.alloc(4, "f32");
  be.gemm(gemmArgs(a, a, c, 2, 2, 3, { transB: true }));
  be.unary("exp", c, c, 4, 0);
  const train = p.report().find((x) => x.phase === "train")!;
  assert.ok(train.entries.some((e) => e.kind === "gemm 1x[2x3]@[3x2]tB"));
  const table = formatCategories(train);
  assert.match(table, /\n\s+GEMM\s+1\s/);
  assert.match(table, /\n\s+elementwise\s+1\s/);
});
