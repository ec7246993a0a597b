/**
 * Serving speed, engine vs the exported graph on onnxruntime-web: `duaf recommend`'s path
 * (core/serve/recommend.ts: resolve users, pad, score all items, top-10 without seen items) in
 * users/s at batch 256, and single-user latency p50/p99.
 *
 *   deno task bench serve [--data DIR] [--steps N] [--users N] [--requests N] [--backend NAME]
 *
 * It preprocesses Amazon Beauty 2014 from DIR (default ../shared/data; the beauty-mini fixture
 * when that is absent, and says so), trains a SASRec (RecBole defaults: d=64, 2 layers, L=50)
 * for N steps (default 10: speed, not quality, is measured) and exports it, all in a temporary
 * directory that is removed at the end.
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { cpus } from "node:os";
import { main } from "../cli/main.ts";
import { OrtScorer } from "../core/serve/ort_scorer.ts";
import {
  recommendBatch,
  type RecommendOutcome,
  type RecommendRequest,
  recommendWith,
} from "../core/serve/recommend.ts";
import { activateBackend, openRun } from "../core/train/run.ts";

const ROOT = join(import.meta.dirname!, "..");
const BATCH = 256;

async function cli(args: string[]): Promise<void> {
  const log = console.log;
  console.log = () => {}; // the commands' JSON reports are not part of the benchmark output
  try {
    const code = await main([...args, "--quiet"]);
    if (code !== 0) throw new Error(`duaf ${args[0]} failed (exit ${code})`);
  } finally {
    console.log = log;
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

interface Timing {
  usersPerSecond: number;
  p50: number;
  p99: number;
}

async function measure(
  score: (reqs: RecommendRequest[]) => Promise<RecommendOutcome[]>,
  users: string[],
  throughputUsers: number,
  requests: number,
): Promise<Timing> {
  const req = (u: string): RecommendRequest => ({ source: u, value: { user: u } });
  await score(users.slice(0, BATCH).map(req)); // warm-up: first-call compilation and allocation
  const n = Math.min(throughputUsers, users.length);
  const started = performance.now();
  for (let s = 0; s < n; s += BATCH) {
    const outs = await score(users.slice(s, Math.min(n, s + BATCH)).map(req));
    if (outs.some((o) => "error" in o)) throw new Error("bench: a request failed");
  }
  const usersPerSecond = n / ((performance.now() - started) / 1000);
  const lat: number[] = [];
  for (let i = 0; i < requests + 10; i++) {
    const u = users[(i * 7919) % users.length];
    const t = performance.now();
    await score([req(u)]);
    if (i >= 10) lat.push(performance.now() - t);
  }
  lat.sort((a, b) => a - b);
  return { usersPerSecond, p50: percentile(lat, 0.5), p99: percentile(lat, 0.99) };
}

async function bench(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      data: { type: "string", default: join(ROOT, "../shared/data") },
      steps: { type: "string", default: "10" },
      users: { type: "string", default: "4096" },
      requests: { type: "string", default: "200" },
      backend: { type: "string" },
    },
  });
  let source = join(values.data!, "amazon-beauty-2014");
  let note = "amazon-beauty-2014";
  try {
    await Deno.stat(join(source, "reviews_Beauty_5.json.gz"));
  } catch {
    source = join(ROOT, "fixtures/beauty-mini");
    note = "fixtures/beauty-mini (../shared/data/amazon-beauty-2014 not found)";
    console.log(`note: ${source.replace(ROOT + "/", "")} stands in for Amazon Beauty`);
  }
  const tmp = await Deno.makeTempDir({ prefix: "duaf-bench-serve-" });
  try {
    const ds = join(tmp, "ds");
    const run = join(tmp, "run");
    const backendArgs = values.backend ? ["--backend", values.backend] : [];
    let t = performance.now();
    await cli([
      "preprocess",
      "--format",
      "amazon2014",
      "--reviews",
      join(source, "reviews_Beauty_5.json.gz"),
      "--meta",
      join(source, "meta_Beauty.json.gz"),
      "--out",
      ds,
    ]);
    const prep = (performance.now() - t) / 1000;
    t = performance.now();
    await cli([
      "train",
      ds,
      "--out",
      run,
      "--model",
      "sasrec",
      "--set",
      "epochs=1",
      "--set",
      `maxSteps=${values.steps}`,
      ...backendArgs,
    ]);
    const trained = (performance.now() - t) / 1000;
    await cli(["export", run, ...backendArgs]);
    console.log(
      `setup: preprocess ${prep.toFixed(1)} s, train ${values.steps} steps + eval ${
        trained.toFixed(1)
      } s`,
    );

    const { backend } = await activateBackend(values.backend);
    const opened = await openRun(run);
    const users = opened.dataset.userIds();
    const opts = { k: 10, includeSeen: false, explain: false };
    const n = Number(values.users);
    const requests = Number(values.requests);
    const engine = await measure(
      (r) => Promise.resolve(recommendBatch(opened, r, opts)),
      users,
      n,
      requests,
    );
    const scorer = await OrtScorer.open(opened, run);
    const ort = await measure((r) => recommendWith(opened, scorer, r, opts), users, n, requests);
    await scorer.close();

    const cfg = opened.manifest.config;
    console.log(
      `\nSASRec d=${cfg.hidden} layers=${cfg.layers} L=${cfg.maxLen} on ${note}: ` +
        `${users.length} users, ${opened.dataset.numItems} items; top-10 over all items`,
    );
    // Other processes share the cores on a busy machine: the load average says how much.
    const load = (await Deno.readTextFile("/proc/loadavg").catch(() => "?")).split(" ")[0];
    console.log(
      `machine: ${cpus()[0]?.model ?? "?"} x${cpus().length}, load average ${load}, ${
        new Date().toISOString()
      }`,
    );
    console.log(
      `throughput over ${Math.min(n, users.length)} users in batches of ${BATCH}; ` +
        `latency over ${requests} single-user requests\n`,
    );
    const row = (name: string, r: Timing) =>
      `| ${name.padEnd(34)} | ${r.usersPerSecond.toFixed(0).padStart(11)} | ${
        r.p50.toFixed(2).padStart(7)
      } | ${r.p99.toFixed(2).padStart(7)} |`;
    console.log(`| ${"runtime".padEnd(34)} | users/s@256 | p50 ms  | p99 ms  |`);
    console.log(`|${"-".repeat(36)}|-------------|---------|---------|`);
    console.log(row(`engine (${backend.name} backend)`, engine));
    console.log(row("ort (onnxruntime-web, 1 thread)", ort));
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

if (import.meta.main) await bench();
