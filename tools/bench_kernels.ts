/**
 * GFLOP/s of the wasm backend's sgemm on the d=64 training shapes (tools/bench_shapes.ts), with
 * one and two kernel threads, beside PyTorch's torch.matmul on the same shapes in the same run
 * (tools/torch/bench_matmul.py, when /usr/bin/python3 has torch). Rounds of about
 * --round-seconds of repeated calls alternate between wasm and torch, so both see the same
 * background load; each number is the best of --rounds rounds.
 *
 *   deno task bench kernels [--rounds 5] [--round-seconds 0.2] [--threads 1,2] [--no-torch]
 *                           [--variant relaxed|simd] [--shapes abcde]
 */
import { parseArgs } from "node:util";
import os from "node:os";
import type { Storage } from "../core/backend.ts";
import { WasmBackend } from "../core/backends/wasm/wasm_backend.ts";
import { Rng } from "../core/random.ts";
import { type GemmShape, shapeGemm, SHAPES } from "./bench_shapes.ts";

const TORCH_SCRIPT = new URL("./torch/bench_matmul.py", import.meta.url).pathname;
const PYTHON = "/usr/bin/python3";

interface Options {
  rounds: number;
  roundSeconds: number;
  threads: (1 | 2)[];
  torch: boolean;
  variant?: "relaxed" | "simd";
  shapes: GemmShape[];
}

function options(): Options {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      rounds: { type: "string", default: "5" },
      "round-seconds": { type: "string", default: "0.2" },
      threads: { type: "string", default: "1,2" },
      "no-torch": { type: "boolean", default: false },
      variant: { type: "string" },
      shapes: { type: "string", default: "abcde" },
    },
  });
  const threads = values.threads.split(",").map(Number);
  if (threads.some((t) => t !== 1 && t !== 2)) throw new Error("--threads takes 1, 2 or 1,2");
  const variant = values.variant;
  if (variant !== undefined && variant !== "relaxed" && variant !== "simd") {
    throw new Error("--variant takes relaxed or simd");
  }
  return {
    rounds: Number(values.rounds),
    roundSeconds: Number(values["round-seconds"]),
    threads: threads as (1 | 2)[],
    torch: !values["no-torch"],
    variant,
    shapes: SHAPES.filter((s) => values.shapes.includes(s.name[0])),
  };
}

/** One shape's operands on one backend, and the calls per round (about --round-seconds). */
interface Prepared {
  run: () => void;
  flop: number;
  reps: number;
}

function prepare(be: WasmBackend, s: GemmShape, o: Options): Prepared {
  const rng = new Rng(1);
  const fill = (n: number): Storage =>
    be.upload(Float32Array.from({ length: n }, () => rng.normal()), "f32");
  const a = fill(s.batch * s.m * s.k);
  const b = fill(s.batch * s.k * s.n);
  const c = be.alloc(s.batch * s.m * s.n, "f32");
  const run = () => be.gemm(shapeGemm(s, a, b, c));
  run(); // warm-up: page faults, optimizing compile
  const t0 = performance.now();
  run();
  const once = Math.max(performance.now() - t0, 1e-3);
  return {
    run,
    flop: 2 * s.batch * s.m * s.n * s.k,
    reps: Math.max(1, Math.round((o.roundSeconds * 1000) / once)),
  };
}

/** GFLOP/s of one round. */
function round(p: Prepared): number {
  const t = performance.now();
  for (let i = 0; i < p.reps; i++) p.run();
  return p.flop / ((performance.now() - t) / p.reps) / 1e6;
}

/** torch.matmul GFLOP/s per shape letter, or the reason there are none. */
async function benchTorch(
  threads: number,
  o: Options,
): Promise<Map<string, number> | { skipped: string }> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(PYTHON, {
      args: [
        TORCH_SCRIPT,
        "--threads",
        String(threads),
        "--rounds",
        "1",
        "--round-seconds",
        String(o.roundSeconds),
        "--shapes",
        o.shapes.map((s) => s.name[0]).join(""),
      ],
      // Debian's torch calls the system BLAS, which sizes its own thread pool: pin it too.
      env: {
        OMP_NUM_THREADS: String(threads),
        OPENBLAS_NUM_THREADS: String(threads),
        MKL_NUM_THREADS: String(threads),
      },
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (e) {
    return { skipped: `cannot run ${PYTHON}: ${e instanceof Error ? e.message : e}` };
  }
  const results = new Map<string, number>();
  for (const line of new TextDecoder().decode(out.stdout).split("\n")) {
    if (!line.trim()) continue;
    const rec = JSON.parse(line);
    if (rec.event === "skipped") return { skipped: "python3-torch not installed" };
    results.set(rec.shape, rec.gflops);
  }
  if (!out.success) return { skipped: `bench_matmul.py failed (exit ${out.code})` };
  return results;
}

function lscpuModel(): string {
  try {
    const out = new Deno.Command("lscpu", { stdout: "piped", stderr: "null" }).outputSync();
    const m = /Model name:\s*(.+)/.exec(new TextDecoder().decode(out.stdout));
    if (m) return m[1].trim();
  } catch {
    // lscpu missing: fall back to what node:os reports
  }
  return os.cpus()[0]?.model ?? "unknown CPU";
}

const fmt = (x: number | undefined, digits = 1) => (x === undefined ? "-" : x.toFixed(digits));
const ratio = (a: number | undefined, b: number | undefined) =>
  a === undefined || b === undefined ? "-" : `${(a / b).toFixed(2)}x`;

async function main(): Promise<void> {
  const o = options();
  const load = os.loadavg().map((l) => l.toFixed(2)).join(" ");
  console.log(
    `machine: ${lscpuModel()}, ${navigator.hardwareConcurrency} cores; load ${load}; ` +
      `deno ${Deno.version.deno}; ${new Date().toISOString().slice(0, 10)}`,
  );
  // Rounds alternate between wasm and torch, so both see the same background load; each
  // number is the best round.
  const backends = new Map<number, WasmBackend>();
  const prepared = new Map<number, Prepared[]>();
  for (const t of o.threads) {
    const be = await WasmBackend.create({ threads: t, variant: o.variant });
    backends.set(t, be);
    prepared.set(t, o.shapes.map((s) => prepare(be, s, o)));
  }
  const variant = backends.get(o.threads[0])!.variant;
  const wasm = new Map<number, Map<string, number>>();
  const torch = new Map<number, Map<string, number>>();
  let skipped = o.torch ? "" : "skipped: --no-torch";
  const keep = (into: Map<number, Map<string, number>>, t: number, key: string, v: number) => {
    const m = into.get(t) ?? new Map<string, number>();
    m.set(key, Math.max(m.get(key) ?? 0, v));
    into.set(t, m);
  };
  for (let r = 0; r < o.rounds; r++) {
    for (const t of o.threads) {
      prepared.get(t)!.forEach((p, i) => keep(wasm, t, o.shapes[i].name[0], round(p)));
      if (skipped) continue;
      const res = await benchTorch(t, o);
      if ("skipped" in res) skipped = `skipped: ${res.skipped}`;
      else for (const [key, v] of res) keep(torch, t, key, v);
    }
  }
  for (const be of backends.values()) be.dispose();
  const endLoad = os.loadavg().map((l) => l.toFixed(2)).join(" ");
  console.log(`load at the end: ${endLoad}`);
  console.log(`wasm kernels: ${variant} SIMD; best of ${o.rounds} rounds; GFLOP/s`);
  if (skipped) console.log(`torch: ${skipped}`);
  console.log("");
  console.log(
    "| shape | wasm 1T | wasm 2T | 2T/1T | torch 1T | torch 2T | wasm/torch 1T | wasm/torch 2T |",
  );
  console.log("|---|---|---|---|---|---|---|---|");
  for (const s of o.shapes) {
    const key = s.name[0];
    const w1 = wasm.get(1)?.get(key);
    const w2 = wasm.get(2)?.get(key);
    const t1 = torch.get(1)?.get(key);
    const t2 = torch.get(2)?.get(key);
    console.log(
      `| ${s.name} | ${fmt(w1)} | ${fmt(w2)} | ${ratio(w2, w1)} | ${fmt(t1)} | ${fmt(t2)} | ` +
        `${ratio(w1, t1)} | ${ratio(w2, t2)} |`,
    );
  }
}

if (import.meta.main) await main();
