// Checks an exported duaf graph in onnxruntime-node (native ONNX Runtime, a different runtime
// from the onnxruntime-web that `duaf --runtime ort` uses) against the engine's scores.
//
//   duaf export RUN --onnx model.onnx --check-data check.json
//   node tools/check_onnx.mjs model.onnx check.json
//
// onnxruntime-node is looked up from this repository and from the current directory; install it
// with `ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node` (the flag skips a CUDA
// download; the CPU library ships in the package). Without it the script prints "skipped" and
// exits 0. Exit 1 when scores differ by more than the file's tolerance (relative to the row's
// largest |score|) or a top-k list differs other than between tied items; exit 2 on bad usage.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import process from "node:process";

async function loadOrt() {
  const bases = [import.meta.url, pathToFileURL(join(process.cwd(), "noop.js")).href];
  for (const base of bases) {
    try {
      const path = createRequire(base).resolve("onnxruntime-node");
      return await import(pathToFileURL(path).href);
    } catch {
      // not installed here; try the next place
    }
  }
  return null;
}

function topK(row, k) {
  const idx = [];
  for (let c = 1; c < row.length; c++) idx.push(c);
  idx.sort((a, b) => row[b] - row[a] || a - b);
  return idx.slice(0, k);
}

async function main(args) {
  if (args.length !== 2) {
    console.error("usage: node tools/check_onnx.mjs MODEL.onnx CHECK.json");
    return 2;
  }
  const [modelPath, checkPath] = args;
  const ort = await loadOrt();
  if (!ort) {
    console.log("skipped: onnxruntime-node is not installed");
    return 0;
  }
  const check = JSON.parse(readFileSync(checkPath, "utf8"));
  if (check.format !== "duaf-onnx-check") {
    console.error(`${checkPath}: not a duaf check file`);
    return 2;
  }
  const session = await ort.InferenceSession.create(readFileSync(modelPath));
  const feeds = {};
  for (const [name, { dims, data }] of Object.entries(check.inputs)) {
    feeds[name] = name === "timestamps"
      ? new ort.Tensor("float32", Float32Array.from(data), dims)
      : new ort.Tensor("int64", BigInt64Array.from(data, (v) => BigInt(v)), dims);
  }
  const out = (await session.run(feeds)).scores;
  const [rows, cols] = check.scores.dims;
  if (out.dims[0] !== rows || out.dims[1] !== cols) {
    console.log(`FAIL: scores are [${out.dims}], expected [${rows}, ${cols}]`);
    return 1;
  }
  const want = check.scores.data;
  const got = out.data;
  let worst = 0;
  let topkFailures = 0;
  for (let r = 0; r < rows; r++) {
    const e = want.slice(r * cols, (r + 1) * cols);
    const o = Array.from(got.subarray(r * cols, (r + 1) * cols));
    const scale = Math.max(1e-12, ...e.map(Math.abs));
    for (let c = 0; c < cols; c++) worst = Math.max(worst, Math.abs(o[c] - e[c]) / scale);
    // Ties aside: at every rank the runtime's item must score (by the engine) what the
    // engine's item at that rank scores.
    const te = topK(e, check.k);
    const to = topK(o, check.k);
    for (let i = 0; i < te.length; i++) {
      if (Math.abs(e[to[i]] - e[te[i]]) > check.tolerance * scale) {
        topkFailures++;
        break;
      }
    }
  }
  const summary = `${rows} rows x ${cols} items, max relative difference ${worst.toExponential(2)}`;
  if (worst > check.tolerance || topkFailures > 0) {
    console.log(
      `FAIL: ${summary} (tolerance ${check.tolerance}), ${topkFailures} top-${check.k} lists differ`,
    );
    return 1;
  }
  console.log(`ok: ${summary}, top-${check.k} lists identical (onnxruntime-node)`);
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
