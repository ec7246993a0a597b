/**
 * The tensor arena: one shared WebAssembly.Memory carved into 64-byte-aligned blocks.
 *
 * Blocks come in size classes (multiples of 64 bytes up to 4 KiB, then four classes per power of
 * two); a freed block goes on its class's LIFO free list and the next allocation of that class
 * takes it back, so the same sequence of alloc/free calls always yields the same addresses.
 * Blocks are never split or merged: training repeats the same shapes every step, so free lists
 * reach a steady state after the first one. New blocks come from a bump pointer, growing the
 * memory when needed; typed-array views are re-created after every grow.
 */

export const PAGE_BYTES = 65536;
export const MAX_PAGES = 65536;
const ALIGN = 64;
const SMALL_LIMIT = 4096;

/** Bytes actually reserved for a request of `bytes` (its size class). */
export function classBytes(bytes: number): number {
  const b = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
  if (b <= SMALL_LIMIT) return b;
  // four classes per power of two: 2^e * {1, 1.25, 1.5, 1.75}
  const e = Math.floor(Math.log2(b));
  const quarter = 2 ** (e - 2);
  return Math.ceil(b / quarter) * quarter;
}

export class Arena {
  readonly memory: WebAssembly.Memory;
  #top: number;
  #free = new Map<number, number[]>();
  #f32!: Float32Array;
  #i32!: Int32Array;
  #u8!: Uint8Array;
  #inUse = 0;

  /** Manages memory from byte `base` (64-aligned) upward; below it belongs to the module. */
  constructor(memory: WebAssembly.Memory, base: number) {
    if (base % ALIGN !== 0) throw new RangeError(`arena base ${base} is not ${ALIGN}-aligned`);
    this.memory = memory;
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

  /** Bytes currently handed out (by class size). */
  get bytesInUse(): number {
    return this.#inUse;
  }

  /** Byte address of a new block of at least `bytes` bytes (contents unspecified). */
  alloc(bytes: number): number {
    const size = classBytes(bytes);
    const list = this.#free.get(size);
    this.#inUse += size;
    if (list && list.length > 0) return list.pop()!;
    const ptr = this.#top;
    const end = ptr + size;
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      const pages = Math.ceil((end - have) / PAGE_BYTES);
      if (have / PAGE_BYTES + pages > MAX_PAGES) {
        this.#inUse -= size;
        throw new RangeError(
          `wasm arena: out of memory allocating ${bytes} bytes (limit ${MAX_PAGES * PAGE_BYTES})`,
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
    const size = classBytes(bytes);
    let list = this.#free.get(size);
    if (!list) {
      list = [];
      this.#free.set(size, list);
    }
    list.push(ptr);
    this.#inUse -= size;
  }

  #refreshViews(): void {
    const buf = this.memory.buffer;
    this.#f32 = new Float32Array(buf);
    this.#i32 = new Int32Array(buf);
    this.#u8 = new Uint8Array(buf);
  }
}
