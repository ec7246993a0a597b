/**
 * A Backend wrapper that times every call by kind (`unary:exp`, `gemm`, `scatterAdd`, ...), for
 * `duaf train --profile`. With `sync`, each call waits for the device before its clock stops, so
 * an asynchronous backend's (cuda) time lands on the kernel that spent it rather than on the next
 * download; the run is slower, but the shares are right. Time outside backend calls is the host's
 * own work (JavaScript: batching, sampling, autograd bookkeeping), reported as its own line.
 * Calls are grouped by phase (training steps, evaluation, setup), switched by the caller.
 */
import type { Backend } from "../backend.ts";

export interface ProfileEntry {
  kind: string;
  calls: number;
  ms: number;
}

export interface PhaseProfile {
  phase: string;
  /** Wall time spent in this phase. */
  wallMs: number;
  /** Kinds by total time, largest first. */
  entries: ProfileEntry[];
}

export interface Profiler {
  /** Forwards to the wrapped backend, timing each call. */
  readonly backend: Backend;
  /** Calls from now on count towards `phase`. */
  phase(name: string): void;
  /** Every phase seen, in first-seen order (the current one's wall time up to now). */
  report(): PhaseProfile[];
}

/** Methods whose first argument names the operation: split by it. */
const BY_OP = new Set(["unary", "unaryGrad", "binary"]);
/** Row kernels with a log flag (argument index): the log form is a loss, the plain one attention. */
const LOG_FLAG: Record<string, number> = { softmax: 4, softmaxGrad: 5 };
/** Bookkeeping with no device work worth a sync. */
const UNTIMED = new Set(["sync", "dispose"]);

export function profiled(
  inner: Backend,
  opts: {
    sync: boolean; /** One kind per GEMM shape (`gemm 1x[2048x64]@[64x256]`). */
    gemmShapes?: boolean;
  },
): Profiler {
  const phases = new Map<string, { wallMs: number; table: Map<string, ProfileEntry> }>();
  let current = "setup";
  let since = performance.now();
  const phaseOf = (name: string) => {
    let p = phases.get(name);
    if (!p) phases.set(name, p = { wallMs: 0, table: new Map() });
    return p;
  };
  phaseOf(current);
  const record = (kind: string, ms: number) => {
    const table = phaseOf(current).table;
    const e = table.get(kind);
    if (e) {
      e.calls++;
      e.ms += ms;
    } else table.set(kind, { kind, calls: 1, ms });
  };
  // One wrapper per method, made on first use: the profiler should add as little host time as
  // it can to the host time it reports.
  const wrappers = new Map<string | symbol, unknown>();
  const backend = new Proxy(inner, {
    get(target, prop) {
      // Getters run on the target itself: they may read its private fields.
      const value = Reflect.get(target, prop);
      if (typeof value !== "function") return value;
      let w = wrappers.get(prop);
      if (w) return w;
      if (typeof prop !== "string" || UNTIMED.has(prop)) w = value.bind(target);
      else {
        const byOp = BY_OP.has(prop);
        const logAt = LOG_FLAG[prop];
        w = (...args: unknown[]) => {
          const t0 = performance.now();
          const out = value.apply(target, args);
          if (opts.sync) target.sync();
          const kind = prop === "gemm" && opts.gemmShapes
            ? `gemm ${gemmShape(args[0] as Record<string, number>)}`
            : byOp
            ? `${prop}:${String(args[0])}`
            : logAt !== undefined && args[logAt]
            ? `${prop}:log`
            : prop;
          record(kind, performance.now() - t0);
          return out;
        };
      }
      wrappers.set(prop, w);
      return w;
    },
  });
  const closeCurrent = () => {
    const now = performance.now();
    phaseOf(current).wallMs += now - since;
    since = now;
  };
  return {
    backend,
    phase(name) {
      if (name === current) return;
      closeCurrent();
      current = name;
      phaseOf(name);
    },
    report() {
      closeCurrent();
      return [...phases].map(([phase, p]) => ({
        phase,
        wallMs: p.wallMs,
        entries: [...p.table.values()].sort((a, b) => b.ms - a.ms),
      }));
    },
  };
}

/** The breakdown's categories, in the order a summary lists them. */
export const CATEGORIES = [
  "GEMM",
  "attention (softmax, fused)",
  "elementwise",
  "layer norm",
  "CE (loss over items)",
  "ranking (eval)",
  "gather/scatter",
  "copy/transpose/fill",
  "optimizer",
  "memory/transfer",
] as const;
export type Category = typeof CATEGORIES[number];

/**
 * The category of a profiled kind (`unary:gelu`, `softmax:log`, `gemm`, `gemm 1x[..]@[..]`, ...):
 * the method name ends at the first ":" or space.
 */
export function categoryOf(kind: string): Category {
  const [method] = kind.split(/[: ]/);
  if (method === "gemm") return "GEMM";
  if (
    method === "softmax" || method === "softmaxGrad" || method === "maskedSoftmax" ||
    method.startsWith("attention")
  ) {
    return kind.endsWith(":log") ? "CE (loss over items)" : "attention (softmax, fused)";
  }
  if (method === "layerNorm" || method === "layerNormGrad" || method.startsWith("addLayerNorm")) {
    return "layer norm";
  }
  if (
    method === "pick" || method === "pickGrad" || method.startsWith("crossEntropy") ||
    method.startsWith("linearCrossEntropy")
  ) {
    return "CE (loss over items)";
  }
  // Full-ranking evaluation's counts, with (rankScores) or without (rankRows) the scores' products.
  if (method === "rankRows" || method === "rankScores") return "ranking (eval)";
  if (method === "gather" || method === "scatterAdd") return "gather/scatter";
  if (method === "copy2d" || method === "permute" || method === "fill") {
    return "copy/transpose/fill";
  }
  if (method === "adam" || method === "sumSquares" || method === "axpy") return "optimizer";
  if (method === "alloc" || method === "free" || method === "upload" || method === "download") {
    return "memory/transfer";
  }
  return "elementwise"; // unary, unaryGrad, binary, reduceSum, dropout, fused biasGelu
}

/** One phase's time by category (largest first), host work last. */
export function formatCategories(p: PhaseProfile): string {
  const by = new Map<string, { calls: number; ms: number }>();
  for (const e of p.entries) {
    const c = categoryOf(e.kind);
    const acc = by.get(c) ?? { calls: 0, ms: 0 };
    acc.calls += e.calls;
    acc.ms += e.ms;
    by.set(c, acc);
  }
  const inBackend = p.entries.reduce((s, e) => s + e.ms, 0);
  const pct = (ms: number) => `${(100 * ms / Math.max(p.wallMs, 1e-9)).toFixed(1)}%`;
  const rows: string[][] = [[`${p.phase} by category`, "calls", "ms", "share"]];
  for (const [c, v] of [...by].sort((a, b) => b[1].ms - a[1].ms)) {
    rows.push([`  ${c}`, String(v.calls), v.ms.toFixed(1), pct(v.ms)]);
  }
  const host = Math.max(0, p.wallMs - inBackend);
  rows.push(["  host (outside backend calls)", "", host.toFixed(1), pct(host)]);
  rows.push(["  wall", "", p.wallMs.toFixed(1), "100.0%"]);
  return alignRows(rows);
}

function alignRows(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) =>
    r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  ")
  ).join("\n");
}

/** A plain-text table of one phase's top kinds and the host's share of its wall time. */
export function formatPhase(p: PhaseProfile, top = 15): string {
  const inBackend = p.entries.reduce((s, e) => s + e.ms, 0);
  const rows: string[][] = [[p.phase, "calls", "ms", "share"]];
  const pct = (ms: number) => `${(100 * ms / Math.max(p.wallMs, 1e-9)).toFixed(1)}%`;
  for (const e of p.entries.slice(0, top)) {
    rows.push([`  ${e.kind}`, String(e.calls), e.ms.toFixed(1), pct(e.ms)]);
  }
  const rest = p.entries.slice(top);
  if (rest.length) {
    const ms = rest.reduce((s, e) => s + e.ms, 0);
    const calls = rest.reduce((s, e) => s + e.calls, 0);
    rows.push([`  (${rest.length} other kinds)`, String(calls), ms.toFixed(1), pct(ms)]);
  }
  const host = Math.max(0, p.wallMs - inBackend);
  rows.push(["  host (outside backend calls)", "", host.toFixed(1), pct(host)]);
  rows.push(["  wall", "", p.wallMs.toFixed(1), "100.0%"]);
  return alignRows(rows);
}

/** `batch x [m x k] @ [k x n]`, with tA / tB for transposed operands. */
function gemmShape(g: Record<string, number>): string {
  return `${g.batch}x[${g.m}x${g.k}]@[${g.k}x${g.n}]${g.transA ? "tA" : ""}${g.transB ? "tB" : ""}`;
}
