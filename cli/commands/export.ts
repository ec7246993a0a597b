/** `duaf export`: a trained run's inference graph as an ONNX file. */
import { resolve } from "node:path";
import { CHECK_DATA_FILE, checkData, exportRun } from "../../core/export/export_run.ts";
import { ONNX_FILE, ONNX_OPSET } from "../../core/export/onnx_export.ts";
import { checkOutputFile, writeOutputFile } from "../../core/io/output_guard.ts";
import { defaultOnnxPath } from "../../core/serve/ort_scorer.ts";
import { activateBackend, openRun } from "../../core/train/run.ts";
import type { Command } from "../command.ts";
import { emitJson, intFlag, onePositional, parseFlags } from "../flags.ts";
import { StderrProgress } from "../progress.ts";

const usage = `usage: duaf export RUN [--onnx FILE] [--topk K] [--check-data FILE] [options]

Writes the run's inference graph (opset ${ONNX_OPSET}) with its weights and item-side tables
baked in, for onnxruntime and other ONNX runtimes. Batch and sequence length are dynamic.

inputs (only those the model reads; all right-padded like the engine's batches):
  item_seq      int64 [batch, seq]   item indices, 0 = padding (seq <= the run's maxLen)
  item_seq_len  int64 [batch]        valid steps per row
  timestamps    float [batch, seq]   days since the dataset's first interaction (duafmat)
outputs:
  scores        float [batch, items+1]  column 0 is padding
  topk_scores   float [batch, K]        with --topk: best items, padding excluded
  topk_items    int64 [batch, K]        item indices (1..items; see the dataset's item ids)

options:
  --onnx FILE          output file (default RUN/model.onnx, where --runtime ort looks); an
                       existing file is replaced only if duaf exported it
  --force              replace --onnx and --check-data whatever files they are
  --topk K             add a TopK head with K items
  --check-data FILE    also write engine scores of 16 test users as JSON, for
                       tools/check_onnx.mjs
  --dataset DIR        dataset location if it moved
  --backend NAME       auto | cuda | native | wasm | js (computes the check data)
  --quiet              no log output

stdout: one JSON object naming the file, its inputs and outputs. See docs/export.md.`;

export const exportCommand: Command = {
  name: "export",
  summary: "export a trained run as an ONNX inference graph",
  usage,
  async run(args) {
    const { values, positionals } = parseFlags("export", args, {
      onnx: { type: "string" },
      topk: { type: "string" },
      "check-data": { type: "string" },
      dataset: { type: "string" },
      backend: { type: "string" },
      quiet: { type: "boolean" },
      force: { type: "boolean" },
    }, true);
    const dir = onePositional("export", "RUN", positionals);
    const topk = intFlag("topk", values.topk, 1);
    const out = values.onnx ?? defaultOnnxPath(dir);
    const progress = new StderrProgress({ quiet: values.quiet, bars: false });
    const guard = { force: values.force };
    const checkPath = values["check-data"];
    await checkOutputFile(out, ONNX_FILE, guard);
    if (checkPath) await checkOutputFile(checkPath, CHECK_DATA_FILE, guard);
    await activateBackend(values.backend);
    const run = await openRun(dir, progress, values.dataset);
    // Everything is built in memory first: a failure leaves no file behind.
    const graph = await exportRun(run, dir, { topk });
    const check = checkPath ? checkData(run, graph.inputs) : null;
    await writeOutputFile(out, graph.bytes, ONNX_FILE, guard);
    if (check) {
      await writeOutputFile(checkPath!, JSON.stringify(check) + "\n", CHECK_DATA_FILE, guard);
    }
    progress.log(`wrote ${out} (${(graph.bytes.length / 1048576).toFixed(1)} MiB)`);
    emitJson({
      onnx: resolve(out),
      model: run.manifest.config.model,
      opset: ONNX_OPSET,
      inputs: graph.inputs,
      outputs: graph.outputs,
      bytes: graph.bytes.length,
      ...(check ? { checkData: resolve(values["check-data"]!) } : {}),
    });
    return 0;
  },
};
