/**
 * Streaming access to input files: gzip is detected from the magic bytes (not the name), the
 * sha256 of the raw bytes is computed in the same pass for the manifest, and progress is reported
 * in raw (compressed) bytes so every streamed read has a known total. Memory stays bounded by one
 * chunk plus one line, whatever the input size.
 */
import { basename } from "node:path";
import { createHash } from "node:crypto";
import { DataError } from "../errors.ts";
import type { Progress } from "../progress.ts";

export interface SourceInfo {
  /** The path as the user gave it. */
  path: string;
  sha256: string;
  bytes: number;
}

async function openFile(path: string): Promise<Deno.FsFile> {
  try {
    const f = await Deno.open(path, { read: true });
    if (!(await f.stat()).isFile) {
      f.close();
      throw new DataError(path, null, null, "not a regular file");
    }
    return f;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new DataError(path, null, null, "no such file");
    if (e instanceof Deno.errors.PermissionDenied) {
      throw new DataError(path, null, null, "permission denied");
    }
    throw e;
  }
}

/**
 * One pass over a file. Iterate `chunks()` (decoded text) or `lines()` exactly once, then read
 * `info` for its hash and size.
 */
export class TextSource {
  #info: SourceInfo | null = null;

  constructor(
    readonly path: string,
    private readonly progress?: Progress,
    private readonly label = `reading ${basename(path)}`,
  ) {}

  get info(): SourceInfo {
    if (!this.#info) throw new Error(`TextSource(${this.path}): read it before asking for info`);
    return this.#info;
  }

  /** Decoded UTF-8 text chunks (gunzipped when the file is gzip). */
  async *chunks(): AsyncGenerator<string> {
    const file = await openFile(this.path);
    const size = (await file.stat()).size;
    const task = this.progress?.start(this.label, size, "B");
    const hash = createHash("sha256");
    let raw = 0;
    const reader = file.readable.getReader();
    const next = async (): Promise<Uint8Array | null> => {
      const { done, value } = await reader.read();
      if (done) return null;
      hash.update(value);
      raw += value.length;
      task?.tick(value.length);
      return value;
    };
    const first = await next();
    const gzip = first !== null && first.length >= 2 && first[0] === 0x1f && first[1] === 0x8b;
    // Raw bytes are hashed and counted as they are pulled, then (maybe) gunzipped and decoded.
    let pending = first;
    const rawStream = new ReadableStream<Uint8Array>({
      async pull(ctrl) {
        const value = pending ?? await next();
        pending = null;
        if (value === null) ctrl.close();
        else ctrl.enqueue(value);
      },
      cancel: () => reader.cancel(),
    });
    const bytes: ReadableStream<Uint8Array> = gzip
      ? rawStream.pipeThrough(
        new DecompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>,
      )
      : rawStream;
    const decoder = new TextDecoder("utf-8", { fatal: true });
    let inflating = true;
    try {
      for await (const chunk of bytes) {
        inflating = false;
        const text = decoder.decode(chunk, { stream: true });
        inflating = true;
        if (text.length > 0) yield text;
      }
      inflating = false;
      const tail = decoder.decode();
      if (tail.length > 0) yield tail;
    } catch (e) {
      if (e instanceof TypeError) {
        const what = gzip && inflating ? "corrupt or truncated gzip data" : "not valid UTF-8 text";
        throw new DataError(this.path, null, null, what);
      }
      throw e;
    } finally {
      await reader.cancel().catch(() => {}); // closes the file, also when the caller stops early
    }
    task?.done();
    this.#info = { path: this.path, sha256: hash.digest("hex"), bytes: raw };
  }

  /** Lines without their terminator (\n or \r\n), with 1-based line numbers. */
  async *lines(): AsyncGenerator<[text: string, line: number]> {
    let carry = "";
    let line = 0;
    for await (const chunk of this.chunks()) {
      let start = 0;
      const text = carry + chunk;
      for (let nl = text.indexOf("\n"); nl !== -1; nl = text.indexOf("\n", start)) {
        const end = nl > start && text.charCodeAt(nl - 1) === 13 ? nl - 1 : nl;
        yield [text.slice(start, end), ++line];
        start = nl + 1;
      }
      carry = text.slice(start);
    }
    if (carry.length > 0) {
      yield [carry.endsWith("\r") ? carry.slice(0, -1) : carry, ++line];
    }
  }
}

/** Hash and size of a file without decoding it (for inputs read by other libraries). */
export async function hashFile(path: string): Promise<SourceInfo> {
  const file = await openFile(path);
  const hash = createHash("sha256");
  let bytes = 0;
  for await (const chunk of file.readable) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { path, sha256: hash.digest("hex"), bytes };
}
