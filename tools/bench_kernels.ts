/**
 * GFLOP/s of the wasm backend's sgemm on the d=64 training shapes (tools/gemm_shapes.ts), with
 * one and two kernel threads, beside PyTorch's torch.matmul(a, b, out=c) on the same shapes in the
 * same run (tools/torch/bench_matmul.py --serve, when /usr/bin/python3 has torch). Each round
 * times, per shape and thread count, about --round-seconds of wasm calls and then the same of
 * torch calls, back to back, so both peers see the same background load on a shared machine.
 * The table gives each peer's best round; the paired column is the median over rounds of
 * wasm/torch within a round, a check that the best rounds were not luck.
 *
 *   deno task bench kernels [--rounds 20] [--round-seconds 0.1] [--threads 1,2] [--no-torch]
 *                           [--variant relaxed|simd] [--shapes abcde]
 */
import { cpuModel } from "./measure.ts";
import { parseArgs } from "node:util";
import os from "node:os";
import type { Storage } from "../core/backend.ts";
import { WasmBackend } from "../core/backends/wasm/wasm_backend.ts";
import { streamLines } from "../core/features/lines.ts";
import { Rng } from "../core/random.ts";
import { type GemmShape, shapeGemm, SHAPES } from "./gemm_shapes.ts";

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
      rounds: { type: "string", default: "20" },
      "round-seconds": { type: "string", default: "0.1" },
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

/**
 * A PyTorch process (bench_matmul.py --serve) with its BLAS pinned to `threads`, answering one
 * timed round per request.
 */
class TorchPeer {
  #child: Deno.ChildProcess;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #lines: AsyncGenerator<[string, number]>;

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.#writer = child.stdin.getWriter();
    this.#lines = streamLines(child.stdout);
  }

  /** The peer, or why there is none (no python3, no torch). */
  static async start(threads: number): Promise<TorchPeer | { skipped: string }> {
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(PYTHON, {
        args: [TORCH_SCRIPT, "--threads", String(threads), "--serve"],
        // Debian's torch calls the system BLAS, which sizes its own thread pool: pin it too.
        env: {
          OMP_NUM_THREADS: String(threads),
          OPENBLAS_NUM_THREADS: String(threads),
          MKL_NUM_THREADS: String(threads),
        },
        stdin: "piped",
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
    } catch (e) {
      return { skipped: `cannot run ${PYTHON}: ${e instanceof Error ? e.message : e}` };
    }
    const peer = new TorchPeer(child);
    const hello = await peer.#line();
    if (hello === undefined) return { skipped: "bench_matmul.py exited before it was ready" };
    const rec = JSON.parse(hello);
    if (rec.event === "skipped") {
      await peer.close();
      return { skipped: "python3-torch not installed" };
    }
    return peer;
  }

  async #line(): Promise<string | undefined> {
    const next = await this.#lines.next();
    return next.done ? undefined : next.value[0];
  }

  /** GFLOP/s of one round of about `seconds` on the shape with this letter. */
  async round(shape: string, seconds: number): Promise<number> {
    await this.#writer.write(new TextEncoder().encode(`${shape} ${seconds}\n`));
    const line = await this.#line();
    if (line === undefined) throw new Error("bench_matmul.py --serve exited mid-run");
    return JSON.parse(line).gflops;
  }

  async close(): Promise<void> {
    await this.#writer.close().catch(() => {});
    await this.#lines.return(undefined);
    await this.#child.status;
  }
}

const fmt = (x: number | undefined, digits = 1) => (x === undefined ? "-" : x.toFixed(digits));
const ratio = (a: number | undefined, b: number | undefined) =>
  a === undefined || b === undefined ? "-" : `${(a / b).toFixed(2)}x`;

const median = (xs: number[]) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length === 0 ? undefined : s[(s.length - 1) >> 1];
};

async function main(): Promise<void> {
  const o = options();
  const load = os.loadavg().map((l) => l.toFixed(2)).join(" ");
  console.log(
    `machine: ${cpuModel()}, ${navigator.hardwareConcurrency} cores; load ${load}; ` +
      `deno ${Deno.version.deno}; ${new Date().toISOString().slice(0, 10)}`,
  );
  const backends = new Map<number, WasmBackend>();
  const prepared = new Map<number, Prepared[]>();
  for (const t of o.threads) {
    const be = await WasmBackend.create({ threads: t, variant: o.variant });
    backends.set(t, be);
    prepared.set(t, o.shapes.map((s) => prepare(be, s, o)));
  }
  const variant = backends.get(o.threads[0])!.variant;
  const peers = new Map<number, TorchPeer>();
  let skipped = o.torch ? "" : "skipped: --no-torch";
  for (const t of o.torch ? o.threads : []) {
    const peer = await TorchPeer.start(t);
    if ("skipped" in peer) {
      skipped = `skipped: ${peer.skipped}`;
      break;
    }
    peers.set(t, peer);
  }
  // Per "threads shape": every round's GFLOP/s of each peer, in round order.
  const wasm = new Map<string, number[]>();
  const torch = new Map<string, number[]>();
  const push = (into: Map<string, number[]>, key: string, v: number) =>
    into.set(key, [...(into.get(key) ?? []), v]);
  for (let r = 0; r < o.rounds; r++) {
    for (const [i, s] of o.shapes.entries()) {
      for (const t of o.threads) {
        const key = `${t} ${s.name[0]}`;
        push(wasm, key, round(prepared.get(t)![i]));
        const peer = peers.get(t);
        if (!peer) continue;
        push(torch, key, await peer.round(s.name[0], o.roundSeconds));
        // OpenBLAS's idle threads spin for a moment after a call: let them park first.
        await new Promise((done) => setTimeout(done, 30));
      }
    }
  }
  for (const peer of peers.values()) await peer.close();
  for (const be of backends.values()) be.dispose();
  const endLoad = os.loadavg().map((l) => l.toFixed(2)).join(" ");
  console.log(`load at the end: ${endLoad}`);
  console.log(`wasm kernels: ${variant} SIMD; best of ${o.rounds} rounds; GFLOP/s`);
  if (skipped) console.log(`torch: ${skipped}`);
  console.log("");
  console.log(
    "| shape | wasm 1T | wasm 2T | 2T/1T | torch 1T | torch 2T | wasm/torch 1T | wasm/torch 2T " +
      "| paired 1T | paired 2T |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|---|");
  const best = (m: Map<string, number[]>, t: number, key: string) => {
    const xs = m.get(`${t} ${key}`);
    return xs ? Math.max(...xs) : undefined;
  };
  const paired = (t: number, key: string) => {
    const w = wasm.get(`${t} ${key}`), p = torch.get(`${t} ${key}`);
    const m = w && p ? median(w.map((x, i) => x / p[i])) : undefined;
    return m === undefined ? "-" : `${m.toFixed(2)}x`;
  };
  for (const s of o.shapes) {
    const key = s.name[0];
    const w1 = best(wasm, 1, key), w2 = best(wasm, 2, key);
    const t1 = best(torch, 1, key), t2 = best(torch, 2, key);
    console.log(
      `| ${s.name} | ${fmt(w1)} | ${fmt(w2)} | ${ratio(w2, w1)} | ${fmt(t1)} | ${fmt(t2)} | ` +
        `${ratio(w1, t1)} | ${ratio(w2, t2)} | ${paired(1, key)} | ${paired(2, key)} |`,
    );
  }
  // The targets of the kernel benchmark, on the best rounds: a shape not run is not judged.
  const targets: [string, number | undefined, number][] = [];
  for (const key of "abcd") {
    const w1 = best(wasm, 1, key), t1 = best(torch, 1, key);
    if (w1 !== undefined && t1 !== undefined) {
      targets.push([`wasm 1T >= 0.6x torch 1T on ${key}`, w1 / t1, 0.6]);
    }
  }
  const d1 = best(wasm, 1, "d"), d2 = best(wasm, 2, "d");
  if (d1 !== undefined && d2 !== undefined) targets.push(["wasm 2T >= 1.6x 1T on d", d2 / d1, 1.6]);
  if (targets.length === 0) return;
  console.log("");
  console.log("| target | measured | result |");
  console.log("|---|---|---|");
  for (const [name, v, goal] of targets) {
    console.log(`| ${name} | ${ratio(v, 1)} | ${v !== undefined && v >= goal ? "pass" : "fail"} |`);
  }
}

if (import.meta.main) await main();
