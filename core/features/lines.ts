/**
 * Line readers with 1-based line numbers: of a text file (gzip-compressed when the name ends in
 * .gz), so large JSONL feature files never sit in memory as one string, and of any byte stream.
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
  let lineNo = 0;
  try {
    for await (const numbered of streamLines(stream)) {
      lineNo = numbered[1];
      yield numbered;
    }
  } catch (e) {
    if (e instanceof DataError) throw e;
    throw new DataError(path, lineNo + 1, null, `cannot read: ${(e as Error).message}`);
  }
}

/** The lines of a UTF-8 byte stream ("\n" or "\r\n" ended) with their 1-based numbers. */
export async function* streamLines(
  stream: ReadableStream<Uint8Array>,
): AsyncGenerator<[line: string, lineNo: number]> {
  let rest = "";
  let lineNo = 0;
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    const parts = (rest + chunk).split("\n");
    rest = parts.pop()!;
    for (const line of parts) yield [line.endsWith("\r") ? line.slice(0, -1) : line, ++lineNo];
  }
  if (rest !== "") yield [rest.endsWith("\r") ? rest.slice(0, -1) : rest, ++lineNo];
}
