/** `duaf recommend`: top-k next items for known users or for histories read as JSONL. */
import { createInterface } from "node:readline";
import process from "node:process";
import { UsageError } from "../../core/errors.ts";
import {
  recommendBatch,
  type RecommendOutcome,
  type RecommendRequest,
  recommendWith,
} from "../../core/serve/recommend.ts";
import { OrtScorer } from "../../core/serve/ort_scorer.ts";
import { activateBackend, openRun } from "../../core/train/run.ts";
import type { Command } from "../command.ts";
import { choiceFlag, intFlag, parseFlags } from "../flags.ts";
import { StderrProgress } from "../progress.ts";

const usage = `usage: duaf recommend RUN [--user ID ...] [--stdin] [options]

Recommends the next items. Known users (--user, or {"user": ID} lines) are scored from their
whole interaction history; {"history": [ITEM, ...], "timestamps": [SECONDS, ...]} lines are
scored from the given history (timestamps optional). Input lines are JSONL on stdin with --stdin.

stdout: one JSON line per request: {"user"?, "items": [...], "scores": [...]} (+ "weights" with
--explain). Unknown items are reported on stderr and skipped; a malformed line is reported with
its line number and the rest continue (exit code 2 at the end if any line failed).

options:
  --user ID            a known user id (repeatable)
  --stdin              read requests as JSONL from stdin
  --k N                items per request (default 10)
  --include-seen       allow items already in the history
  --explain            add DuAF's per-step modality weights (duafmat runs)
  --batch N            requests scored together (default 256)
  --dataset DIR        dataset location if it moved
  --backend NAME       auto | cuda | native | wasm | js
  --runtime engine|ort score with the engine (default) or the exported ONNX graph
  --onnx FILE          the graph for --runtime ort (default RUN/model.onnx; see duaf export)
  --quiet              no log output`;

export const recommendCommand: Command = {
  name: "recommend",
  summary: "top-k next-item recommendations as JSONL",
  usage,
  async run(args) {
    const { values, positionals } = parseFlags("recommend", args, {
      user: { type: "string", multiple: true },
      stdin: { type: "boolean" },
      k: { type: "string" },
      "include-seen": { type: "boolean" },
      explain: { type: "boolean" },
      batch: { type: "string" },
      dataset: { type: "string" },
      backend: { type: "string" },
      runtime: { type: "string" },
      onnx: { type: "string" },
      quiet: { type: "boolean" },
    }, true);
    const dir = positionals[0];
    if (!dir) throw new UsageError("RUN is required (see duaf help recommend)");
    if (!values.user?.length && !values.stdin) {
      throw new UsageError("give --user ID or --stdin (see duaf help recommend)");
    }
    const k = intFlag("k", values.k, 1) ?? 10;
    const batchSize = intFlag("batch", values.batch, 1) ?? 256;
    const runtime = choiceFlag("runtime", values.runtime, ["engine", "ort"] as const) ?? "engine";
    if (values.onnx !== undefined && runtime !== "ort") {
      throw new UsageError("--onnx needs --runtime ort");
    }
    const progress = new StderrProgress({ quiet: values.quiet, bars: false });
    await activateBackend(values.backend);
    const run = await openRun(dir, progress, values.dataset);
    const scorer = runtime === "ort" ? await OrtScorer.open(run, dir, values.onnx) : null;
    const opts = {
      k,
      includeSeen: Boolean(values["include-seen"]),
      explain: Boolean(values.explain),
    };
    const encoder = new TextEncoder();
    let failed = 0;
    const pending: RecommendRequest[] = [];
    const flush = async () => {
      const requests = pending.splice(0);
      const outs: RecommendOutcome[] = scorer
        ? await recommendWith(run, scorer, requests, opts)
        : recommendBatch(run, requests, opts);
      for (const out of outs) {
        if ("error" in out) {
          failed++;
          progress.log(out.error);
        } else {
          for (const w of out.warnings) progress.log(w);
          Deno.stdout.writeSync(encoder.encode(JSON.stringify(out.result) + "\n"));
        }
      }
    };
    for (const user of values.user ?? []) {
      pending.push({ source: `--user ${user}`, value: { user } });
    }
    if (values.stdin) {
      let lineNo = 0;
      for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
        lineNo++;
        if (!line.trim()) continue;
        let value: unknown;
        try {
          value = JSON.parse(line);
        } catch {
          failed++;
          progress.log(`stdin:${lineNo}: not valid JSON`);
          continue;
        }
        pending.push({ source: `stdin:${lineNo}`, value });
        if (pending.length >= batchSize) await flush();
      }
    }
    await flush();
    await scorer?.close();
    return failed ? 2 : 0;
  },
};
