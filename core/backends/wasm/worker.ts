/**
 * Body of the second kernel thread (see thread.ts): instantiates the kernel module on the shared
 * memory, then serves calls published in the control block until told to stop.
 */
import { parentPort } from "node:worker_threads";
import { instantiateKernels, type KernelExports } from "./kernels.ts";
import { withCpuKernels } from "../cpu_kernels.ts";
import { openCpuKernels } from "../../../ffi/cpu.ts";
import {
  ARGS_BYTE,
  DONE,
  FAILED,
  MAX_ARGS,
  NARGS,
  OP,
  pollWhile,
  PollWindow,
  SEQ,
  STOP,
  THREAD_OPS,
} from "./thread.ts";

interface Start {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  ctrl: number;
  /** The C kernel library the main thread uses (core/backends/cpu_kernels.ts), if any. */
  cpuKernels?: string;
}

/** Serves calls published after `seen` (the SEQ value when the worker reported ready). */
function serve(kernels: KernelExports, i32: Int32Array, f64: Float64Array, seen: number): void {
  // The C kernels' own calls (lceForward, ...) are absent from a wasm-only worker.
  const fns = THREAD_OPS.map((name) =>
    (kernels[name] as ((...a: number[]) => unknown) | undefined)?.bind(kernels)
  );
  const poll = new PollWindow();
  for (;;) {
    const seq = pollWhile(i32, SEQ, seen, poll);
    if (seq === seen) {
      Atomics.wait(i32, SEQ, seen);
      continue;
    }
    seen = seq;
    const op = i32[OP];
    if (op === STOP) return;
    try {
      fns[op]!(...f64.subarray(0, i32[NARGS]));
    } catch {
      i32[FAILED] = 1;
    }
    Atomics.store(i32, DONE, seq);
    Atomics.notify(i32, DONE, 1);
  }
}

parentPort!.once("message", async (start: Start) => {
  try {
    let kernels = await instantiateKernels(start.module, start.memory);
    if (start.cpuKernels) {
      kernels = withCpuKernels(kernels, start.memory, openCpuKernels(start.cpuKernels));
    }
    const i32 = new Int32Array(start.memory.buffer, start.ctrl, ARGS_BYTE / 4);
    const f64 = new Float64Array(start.memory.buffer, start.ctrl + ARGS_BYTE, MAX_ARGS);
    // Read before reporting ready: the main thread may publish its first call as soon as it hears
    // "ready", and a worker that read SEQ after that call would take it as already served and
    // sleep through it (the caller then waits out its timeout).
    const seen = Atomics.load(i32, SEQ);
    parentPort!.postMessage("ready");
    serve(kernels, i32, f64, seen);
  } catch (e) {
    parentPort!.postMessage(e instanceof Error ? e.message : String(e));
  }
});
