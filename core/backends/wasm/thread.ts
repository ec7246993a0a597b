/**
 * The second kernel thread: a worker running the same kernel module on the same shared memory,
 * driven through a control block in that memory with Atomics.wait/notify (no message passing
 * per call). The main thread publishes a call, computes its own share, then waits for the
 * worker's share; each call names a kernel export and up to MAX_ARGS numeric arguments.
 */
import { Worker } from "node:worker_threads";

// Control block layout (Int32 slots, then Float64 arguments from byte 64).
export const CTRL_BYTES = 64 + 8 * 32;
export const SEQ = 0; // bumped by the main thread to publish a call
export const DONE = 1; // set by the worker to the SEQ value it finished
export const OP = 2; // index into THREAD_OPS, or STOP
export const NARGS = 3;
export const FAILED = 4; // non-zero when the worker's share threw
export const ARGS_BYTE = 64;
export const MAX_ARGS = 32;
export const STOP = -1;

/** Kernel exports the worker can run. */
export const THREAD_OPS = [
  "gemm",
  "unary",
  "unaryGrad",
  "softmax",
  "softmaxGrad",
  "maskedSoftmax",
  "layerNorm",
  "addLayerNorm",
  "dropoutAt",
  "layerNormGradPart",
  "crossEntropyBlock",
  "crossEntropyBlockGrad",
  "modalityFusion",
  "modalityFusionGrad",
  "gemmSlices",
  "gemmEpilogue",
  "colSums",
  "lceForward",
  "lceBackward",
  "rankScores",
  "lceForwardBf16",
  "lceBackwardBf16",
  "attention",
  "attentionGrad",
  "dropoutRows",
  "gatherDots",
  "gatherDotsGradH",
  "scatterOuter",
  "lceStreamForward",
  "lceStreamBackward",
  "lceStreamForwardBf16",
  "lceStreamBackwardBf16",
  "axpy",
  "binary",
  "fill32",
  "copy2d",
  "adam",
  "gather",
  "gatherAdd",
] as const;
export type ThreadOp = typeof THREAD_OPS[number];

/**
 * How long a thread polls for the other's signal before it sleeps on the futex. A sleeping worker
 * takes ~40 us to wake here (a DuAF-MAT epoch's woke 14,600 times, 627 ms in all), while the host
 * work between two split calls is mostly tens to hundreds of microseconds. So each side polls for
 * up to a millisecond, but only while the cores look free: a thread polling on a core another
 * process's thread waits for slows both (two test processes on two cores took 1.25x as long).
 */
export const POLL_MS = 1;
/** The poll while other threads want the cores: a few microseconds, about 2,000 polls. */
export const SHORT_POLL_MS = 0.005;
/** How often a thread looks again at whether the cores are free. */
export const RECHECK_MS = 100;

/** One thread's polling window, looked up again every RECHECK_MS. */
export class PollWindow {
  #checkedAt = -Infinity;
  #ms = SHORT_POLL_MS;

  /** `runnable`: threads runnable now, this one included, or null where that cannot be known. */
  constructor(
    readonly cores: number = navigator.hardwareConcurrency ?? 1,
    readonly runnable: () => number | null = runnableThreads,
  ) {}

  /** Milliseconds to poll at time `now` (performance.now()). */
  ms(now: number): number {
    if (now - this.#checkedAt >= RECHECK_MS) {
      this.#checkedAt = now;
      const r = this.runnable();
      this.#ms = r !== null && r <= this.cores ? POLL_MS : SHORT_POLL_MS;
    }
    return this.#ms;
  }
}

const LOADAVG = "/proc/loadavg";
let loadavgReadable: boolean | null = null;

/**
 * Threads runnable now on the whole machine, the caller included: Linux's /proc/loadavg (its
 * fourth field, "running/total"). Null elsewhere, or without permission to read it (never asked:
 * a prompt would stop a kernel thread).
 */
export function runnableThreads(): number | null {
  loadavgReadable ??= Deno.build.os === "linux" &&
    Deno.permissions.querySync({ name: "read", path: LOADAVG }).state === "granted";
  if (!loadavgReadable) return null;
  try {
    const m = /^\S+ \S+ \S+ (\d+)\//.exec(Deno.readTextFileSync(LOADAVG));
    return m ? Number(m[1]) : null;
  } catch {
    loadavgReadable = false;
    return null;
  }
}

/** Polls i32[slot] while it holds `value`, for up to `window`'s time; returns the last value read. */
export function pollWhile(
  i32: Int32Array,
  slot: number,
  value: number,
  window: PollWindow,
): number {
  let v = Atomics.load(i32, slot);
  if (v !== value) return v;
  const start = performance.now();
  const limit = window.ms(start);
  // The clock is read every 256 polls: a poll takes nanoseconds, a clock read tens of them.
  for (let i = 1; v === value; i++) {
    if ((i & 255) === 0 && performance.now() - start > limit) break;
    v = Atomics.load(i32, slot);
  }
  return v;
}

/** A worker that has not started by then never will (a thread could not be created). */
const START_TIMEOUT_MS = 30_000;
/**
 * No share of one kernel call takes this long (the largest GEMM of a training step takes well
 * under a second); a worker this late has died, and waiting on would hang the process.
 */
const CALL_TIMEOUT_MS = 120_000;

export class KernelThread {
  readonly #worker: Worker;
  readonly #i32: Int32Array;
  readonly #f64: Float64Array;
  #seq = 0;
  #stopped = false;
  readonly #poll = new PollWindow();

  private constructor(worker: Worker, memory: WebAssembly.Memory, ctrl: number) {
    this.#worker = worker;
    this.#i32 = new Int32Array(memory.buffer, ctrl, ARGS_BYTE / 4);
    this.#f64 = new Float64Array(memory.buffer, ctrl + ARGS_BYTE, MAX_ARGS);
  }

  /**
   * Starts the worker and waits until it has instantiated the module on `memory`; with
   * `cpuKernels` (a library path) it routes calls to those C kernels as the main thread does.
   */
  static async start(
    module: WebAssembly.Module,
    memory: WebAssembly.Memory,
    ctrl: number,
    cpuKernels?: string,
  ): Promise<KernelThread> {
    new Int32Array(memory.buffer, ctrl, ARGS_BYTE / 4).fill(0);
    const worker = new Worker(new URL("./worker.ts", import.meta.url));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const ready = new Promise<void>((resolve, reject) => {
      worker.once("message", (m: unknown) => {
        if (m === "ready") resolve();
        else reject(new Error(`wasm kernel worker: ${String(m)}`));
      });
      worker.once("error", reject);
      timer = setTimeout(
        () => reject(new Error(`wasm kernel worker did not start within ${START_TIMEOUT_MS} ms`)),
        START_TIMEOUT_MS,
      );
    });
    worker.postMessage({ module, memory, ctrl, cpuKernels });
    try {
      await ready;
    } catch (e) {
      worker.terminate();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    // A worker blocked in Atomics.wait must not keep the process alive.
    worker.unref();
    return new KernelThread(worker, memory, ctrl);
  }

  /** Runs `op(...args)` on the worker while `own` runs here; returns when both are done. */
  run(op: ThreadOp, args: readonly number[], own: () => void): void {
    if (this.#stopped) throw new Error("wasm kernel thread was stopped");
    const i32 = this.#i32;
    // A typed array drops writes past its end: more arguments would reach the worker cut short.
    if (args.length > MAX_ARGS) throw new RangeError(`kernel thread: ${args.length} arguments`);
    for (let i = 0; i < args.length; i++) this.#f64[i] = args[i];
    i32[OP] = THREAD_OPS.indexOf(op);
    i32[NARGS] = args.length;
    i32[FAILED] = 0;
    const seq = ++this.#seq;
    Atomics.store(i32, SEQ, seq);
    Atomics.notify(i32, SEQ, 1);
    // The worker's share must be waited for even when ours throws: it writes the same memory.
    let ownError: unknown = null;
    try {
      own();
    } catch (e) {
      ownError = e;
    }
    this.#awaitDone(seq, op);
    if (ownError !== null) throw ownError;
    if (i32[FAILED] !== 0) throw new Error(`wasm kernel worker failed in ${op}`);
  }

  /** Waits for the worker to finish call `seq`: polls (PollWindow), then sleeps on DONE. */
  #awaitDone(seq: number, op: ThreadOp): void {
    const i32 = this.#i32;
    // DONE holds the previous call's seq until the worker finishes this one.
    let done = pollWhile(i32, DONE, seq - 1, this.#poll);
    if (done === seq) return;
    const deadline = performance.now() + CALL_TIMEOUT_MS;
    while (done !== seq) {
      const left = deadline - performance.now();
      if (left <= 0) {
        this.#stopped = true;
        this.#worker.terminate();
        throw new Error(`wasm kernel worker did not finish ${op} within ${CALL_TIMEOUT_MS} ms`);
      }
      Atomics.wait(i32, DONE, done, left);
      done = Atomics.load(i32, DONE);
    }
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#i32[OP] = STOP;
    Atomics.store(this.#i32, SEQ, ++this.#seq);
    Atomics.notify(this.#i32, SEQ, 1);
    this.#worker.terminate();
  }
}
