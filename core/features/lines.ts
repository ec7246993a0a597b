/**
 * Streams the lines of a text file (gzip-compressed when the name ends in .gz) with their
 * 1-based numbers, so large JSONL feature files never sit in memory as one string.
 */
import { DataError } from "../errors.ts";

export async function* readLines(path: string): AsyncGenerator<[line: string, lineNo: number]> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path);
  } catch (e) {
    throw new DataError(path, null, null, `cannot read: ${(e as Error).message}`);
  }
  let stream: ReadableStream<Uint8Array> = file.readable;
  if (path.endsWith(".gz")) {
    stream = stream.pipeThrough(
      new DecompressionStream("gzip") as TransformStream<Uint8Array, Uint8Array>,
    );
  }
  const text = stream.pipeThrough(new TextDecoderStream());
  let rest = "";
  let lineNo = 0;
  try {
    for await (const chunk of text) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      for (const line of parts) yield [line.endsWith("\r") ? line.slice(0, -1) : line, ++lineNo];
    }
  } catch (e) {
    if (e instanceof DataError) throw e;
    throw new DataError(path, lineNo + 1, null, `cannot read: ${(e as Error).message}`);
  }
  if (rest !== "") yield [rest.endsWith("\r") ? rest.slice(0, -1) : rest, ++lineNo];
}
