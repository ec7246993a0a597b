/**
 * The tensor arena: one shared WebAssembly.Memory carved into 64-byte-aligned blocks.
 *
 * A best-fit allocator with splitting and coalescing: free blocks are kept sorted by address,
 * an allocation takes the smallest free block that fits (lowest address on ties) and splits off
 * the rest, and a freed block merges with free neighbours — or with the bump region when it
 * ends at the top. Training frees every per-step tensor at the end of the step, so the free
 * space coalesces back into one region each step even when shapes change from batch to batch
 * (length-bucketed batches do). Decisions depend only on the sequence of calls, so the same
 * calls always yield the same addresses. Views are re-created after every grow.
 */

import { formatBytes, ResourceError, UsageError } from "../../errors.ts";

export const PAGE_BYTES = 65536;
export const MAX_PAGES = 65536;
const ALIGN = 64;

/**
 * The arena's limit from $DUAF_WASM_MEMORY ("512MiB", "2GiB", or bytes), for sharing a machine
 * or trying a memory budget; absent: wasm32's 4 GiB.
 */
export function arenaLimitFromEnv(): number {
  const v = Deno.env.get("DUAF_WASM_MEMORY");
  const max = MAX_PAGES * PAGE_BYTES;
  if (!v) return max;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB)?\s*$/i.exec(v);
  const scale: Record<string, number> = { b: 1, kib: 1 << 10, mib: 1 << 20, gib: 1 << 30 };
  const bytes = m ? Number(m[1]) * scale[(m[2] ?? "b").toLowerCase()] : NaN;
  if (!(bytes >= 16 * PAGE_BYTES) || bytes > max) {
    throw new UsageError(`DUAF_WASM_MEMORY: expected a size from 1MiB to 4GiB, got '${v}'`);
  }
  return bytes;
}

/** Bytes actually reserved for a request of `bytes`. */
export function blockBytes(bytes: number): number {
  return Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
}

export class Arena {
  readonly memory: WebAssembly.Memory;
  #top: number;
  /** Free blocks as parallel arrays sorted by address. */
  #freeAddr: number[] = [];
  #freeSize: number[] = [];
  #f32!: Float32Array;
  #i32!: Int32Array;
  #u8!: Uint8Array;
  #inUse = 0;
  #peak = 0;

  readonly #maxPages: number;

  /**
   * Manages memory from byte `base` (64-aligned) upward; below it belongs to the module. The
   * memory never grows past `limitBytes` (at most wasm32's 4 GiB).
   */
  constructor(memory: WebAssembly.Memory, base: number, limitBytes = MAX_PAGES * PAGE_BYTES) {
    if (base % ALIGN !== 0) throw new RangeError(`arena base ${base} is not ${ALIGN}-aligned`);
    this.memory = memory;
    this.#maxPages = Math.min(MAX_PAGES, Math.floor(limitBytes / PAGE_BYTES));
    this.#top = base;
    this.#refreshViews();
  }

  get f32(): Float32Array {
    return this.#f32;
  }
  get i32(): Int32Array {
    return this.#i32;
  }
  get u8(): Uint8Array {
    return this.#u8;
  }

  /** Bytes currently handed out. */
  get bytesInUse(): number {
    return this.#inUse;
  }

  /** Most bytes handed out at once since the arena was made or resetPeak() last ran. */
  get peakBytesInUse(): number {
    return this.#peak;
  }

  /** Most bytes the memory may grow to (DUAF_WASM_MEMORY, at most wasm32's 4 GiB). */
  get limitBytes(): number {
    return this.#maxPages * PAGE_BYTES;
  }

  /** Starts a new peak measurement from the bytes in use now. */
  resetPeak(): void {
    this.#peak = this.#inUse;
  }

  /** End of the highest block ever handed out that is still below the bump pointer. */
  get top(): number {
    return this.#top;
  }

  /** Number of free blocks below the top (fragmentation indicator). */
  get freeBlocks(): number {
    return this.#freeAddr.length;
  }

  /** Byte address of a new block of at least `bytes` bytes (contents unspecified). */
  alloc(bytes: number): number {
    const size = blockBytes(bytes);
    let best = -1;
    for (let i = 0; i < this.#freeSize.length; i++) {
      const f = this.#freeSize[i];
      if (f >= size && (best < 0 || f < this.#freeSize[best])) {
        best = i;
        if (f === size) break;
      }
    }
    this.#inUse += size;
    if (this.#inUse > this.#peak) this.#peak = this.#inUse;
    if (best >= 0) {
      const ptr = this.#freeAddr[best];
      const rest = this.#freeSize[best] - size;
      if (rest > 0) {
        this.#freeAddr[best] = ptr + size;
        this.#freeSize[best] = rest;
      } else {
        this.#freeAddr.splice(best, 1);
        this.#freeSize.splice(best, 1);
      }
      return ptr;
    }
    const ptr = this.#top;
    const end = ptr + size;
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      const pages = Math.ceil((end - have) / PAGE_BYTES);
      if (have / PAGE_BYTES + pages > this.#maxPages) {
        this.#inUse -= size;
        throw new ResourceError(
          "wasm arena memory",
          bytes,
          `limit ${formatBytes(this.#maxPages * PAGE_BYTES)}, ${formatBytes(this.#inUse)} in use`,
          `use smaller batches (tokenBudget, batchSize, evalBatchSize)${
            this.#maxPages < MAX_PAGES ? " or raise DUAF_WASM_MEMORY (at most 4GiB)" : ""
          }`,
        );
      }
      this.memory.grow(pages);
      this.#refreshViews();
    }
    this.#top = end;
    return ptr;
  }

  /** Returns a block obtained from alloc(bytes) with the same `bytes`. */
  free(ptr: number, bytes: number): void {
    let size = blockBytes(bytes);
    this.#inUse -= size;
    let addr = ptr;
    // Position of the first free block above ptr (binary search).
    let lo = 0;
    let hi = this.#freeAddr.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.#freeAddr[mid] < ptr) lo = mid + 1;
      else hi = mid;
    }
    // Merge with the free block just below.
    if (lo > 0 && this.#freeAddr[lo - 1] + this.#freeSize[lo - 1] === addr) {
      lo--;
      addr = this.#freeAddr[lo];
      size += this.#freeSize[lo];
      this.#freeAddr.splice(lo, 1);
      this.#freeSize.splice(lo, 1);
    }
    // Merge with the free block just above.
    if (lo < this.#freeAddr.length && addr + size === this.#freeAddr[lo]) {
      size += this.#freeSize[lo];
      this.#freeAddr.splice(lo, 1);
      this.#freeSize.splice(lo, 1);
    }
    if (addr + size === this.#top) {
      this.#top = addr; // back into the bump region
      return;
    }
    this.#freeAddr.splice(lo, 0, addr);
    this.#freeSize.splice(lo, 0, size);
  }

  #refreshViews(): void {
    const buf = this.memory.buffer;
    this.#f32 = new Float32Array(buf);
    this.#i32 = new Int32Array(buf);
    this.#u8 = new Uint8Array(buf);
  }
}
