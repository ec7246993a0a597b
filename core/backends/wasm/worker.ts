/**
 * Body of the second kernel thread (see thread.ts): instantiates the kernel module on the shared
 * memory, then serves calls published in the control block until told to stop.
 */
import { parentPort } from "node:worker_threads";
import { instantiateKernels, type KernelExports } from "./kernels.ts";
import {
  ARGS_BYTE,
  DONE,
  FAILED,
  MAX_ARGS,
  NARGS,
  OP,
  SEQ,
  SPIN_POLLS,
  STOP,
  THREAD_OPS,
} from "./thread.ts";

interface Start {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  ctrl: number;
}

function serve(kernels: KernelExports, memory: WebAssembly.Memory, ctrl: number): void {
  const i32 = new Int32Array(memory.buffer, ctrl, ARGS_BYTE / 4);
  const f64 = new Float64Array(memory.buffer, ctrl + ARGS_BYTE, MAX_ARGS);
  const fns = THREAD_OPS.map((name) =>
    (kernels[name] as (...a: number[]) => unknown).bind(kernels)
  );
  let seen = Atomics.load(i32, SEQ);
  for (;;) {
    let seq = Atomics.load(i32, SEQ);
    for (let i = 0; i < SPIN_POLLS && seq === seen; i++) seq = Atomics.load(i32, SEQ);
    if (seq === seen) {
      Atomics.wait(i32, SEQ, seen);
      continue;
    }
    seen = seq;
    const op = i32[OP];
    if (op === STOP) return;
    try {
      fns[op](...f64.subarray(0, i32[NARGS]));
    } catch {
      i32[FAILED] = 1;
    }
    Atomics.store(i32, DONE, seq);
    Atomics.notify(i32, DONE, 1);
  }
}

parentPort!.once("message", async (start: Start) => {
  try {
    const kernels = await instantiateKernels(start.module, start.memory);
    parentPort!.postMessage("ready");
    serve(kernels, start.memory, start.ctrl);
  } catch (e) {
    parentPort!.postMessage(e instanceof Error ? e.message : String(e));
  }
});
