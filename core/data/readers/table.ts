/**
 * Generic tables: CSV and TSV with a header row, JSON lines, and Parquet. Each yields rows as
 * objects keyed by column name with the line (Parquet: row) number, so one column mapping
 * serves all four. CSV follows RFC 4180 quoting (csv-parse); TSV has no quoting (IANA
 * text/tab-separated-values), so quotes inside titles need no escaping.
 */
import { basename } from "node:path";
import { parse as csvParse } from "csv-parse/stream";
import { parquetMetadataAsync, parquetReadObjects } from "hyparquet";
import { compressors } from "hyparquet-compressors";
import type { AsyncBuffer } from "hyparquet";
import { DataError } from "../../errors.ts";
import { hashFile, type SourceInfo, TextSource } from "../source.ts";
import type { ReadContext } from "./context.ts";

export type TableFormat = "csv" | "tsv" | "jsonl" | "parquet";

export interface TableRow {
  row: Record<string, unknown>;
  line: number;
}

/** A one-pass table reader; `info` is available once the rows are exhausted. */
export interface TableReader {
  rows(): AsyncGenerator<TableRow>;
  readonly info: SourceInfo;
}

export function openTable(
  path: string,
  format: TableFormat,
  ctx: ReadContext,
  columns: string[],
): TableReader {
  if (format === "jsonl") return jsonlReader(path, ctx);
  if (format === "parquet") return parquetReader(path, ctx, columns);
  return delimitedReader(path, format === "tsv" ? "\t" : ",", ctx);
}

function jsonlReader(path: string, ctx: ReadContext): TableReader {
  const src = new TextSource(path, ctx.progress, `reading ${basename(path)}`);
  return {
    get info() {
      return src.info;
    },
    async *rows() {
      for await (const [text, line] of src.lines()) {
        if (text.trim() === "") continue;
        let row: unknown;
        try {
          row = JSON.parse(text);
        } catch (e) {
          ctx.issues.bad(path, line, "line", `not JSON (${(e as Error).message})`, "malformed");
          continue;
        }
        if (typeof row !== "object" || row === null || Array.isArray(row)) {
          ctx.issues.bad(path, line, "line", "expected a JSON object", "malformed");
          continue;
        }
        yield { row: row as Record<string, unknown>, line };
      }
    },
  };
}

interface CsvRecord {
  record: Record<string, string>;
  info: { lines: number };
}

function delimitedReader(path: string, delimiter: string, ctx: ReadContext): TableReader {
  const src = new TextSource(path, ctx.progress, `reading ${basename(path)}`);
  return {
    get info() {
      return src.info;
    },
    async *rows() {
      const parser = csvParse({
        delimiter,
        columns: (header: string[]) => {
          const seen = new Set<string>();
          for (const h of header) {
            if (seen.has(h)) throw new DataError(path, 1, h, "column appears twice in the header");
            seen.add(h);
          }
          return header;
        },
        quote: delimiter === "\t" ? false : '"',
        bom: true,
        info: true,
        skip_empty_lines: true,
        skip_records_with_error: !ctx.issues.strict,
        on_skip: (err: { lines?: number; message: string } | undefined) => {
          if (err) ctx.issues.bad(path, err.lines ?? null, "line", csvProblem(err), "malformed");
        },
      });
      // csv-parse takes bytes; the text was already checked as UTF-8 by the source.
      const encoder = new TextEncoder();
      const bytes = ReadableStream.from(src.chunks()).pipeThrough(
        new TransformStream<string, Uint8Array>({
          transform: (t, c) => c.enqueue(encoder.encode(t)),
        }),
      );
      const stream = bytes.pipeThrough(parser);
      try {
        for await (const rec of stream as ReadableStream<CsvRecord>) {
          yield { row: rec.record, line: rec.info.lines };
        }
      } catch (e) {
        if (e instanceof DataError) throw e;
        const err = e as { code?: string; lines?: number; message: string };
        if (typeof err.code === "string" && err.code.startsWith("CSV_")) {
          throw new DataError(path, err.lines ?? null, "line", csvProblem(err));
        }
        throw e;
      }
    },
  };
}

function csvProblem(err: { message: string }): string {
  // csv-parse messages start with "Invalid Record Length: ..." etc. and end with the line.
  return err.message.replace(/\s*(on|at) line \d+\.?$/, "").replace(/\.$/, "");
}

/** Random access to a local file for hyparquet (which reads the footer, then column chunks). */
async function fileBuffer(path: string): Promise<{ buffer: AsyncBuffer; close(): void }> {
  const file = await Deno.open(path, { read: true });
  const byteLength = (await file.stat()).size;
  return {
    buffer: {
      byteLength,
      async slice(start: number, end?: number) {
        const stop = Math.min(end ?? byteLength, byteLength);
        const out = new Uint8Array(Math.max(0, stop - start));
        await file.seek(start, Deno.SeekMode.Start);
        let got = 0;
        while (got < out.length) {
          const n = await file.read(out.subarray(got));
          if (n === null) break;
          got += n;
        }
        return out.buffer;
      },
    },
    close: () => file.close(),
  };
}

function parquetReader(path: string, ctx: ReadContext, columns: string[]): TableReader {
  let info: SourceInfo | null = null;
  return {
    get info() {
      if (!info) throw new Error("parquet reader: read the rows first");
      return info;
    },
    async *rows() {
      info = await hashFile(path);
      const { buffer, close } = await fileBuffer(path);
      try {
        let metadata;
        try {
          metadata = await parquetMetadataAsync(buffer);
        } catch (e) {
          throw new DataError(path, null, null, `not a Parquet file (${(e as Error).message})`);
        }
        const have = new Set(metadata.schema.slice(1).map((s) => s.name));
        const wanted = columns.filter((c) => have.has(c));
        const task = ctx.progress?.start(
          `reading ${basename(path)}`,
          Number(metadata.num_rows),
          "rows",
        );
        let rowStart = 0;
        // One row group at a time keeps memory at one group's worth of the wanted columns.
        for (const group of metadata.row_groups) {
          const rowEnd = rowStart + Number(group.num_rows);
          const rows = await parquetReadObjects({
            file: buffer,
            metadata,
            columns: wanted,
            rowStart,
            rowEnd,
            compressors,
          });
          for (let k = 0; k < rows.length; k++) yield { row: rows[k], line: rowStart + k + 1 };
          task?.tick(rows.length);
          rowStart = rowEnd;
        }
        task?.done();
      } finally {
        close();
      }
    },
  };
}

export interface TableColumns {
  user: string;
  item: string;
  time: string;
  /** Item text columns, joined in this order. */
  text: string[];
  category: string | null;
  image: string | null;
  /** Title column; null = the first text column. */
  title: string | null;
}

/**
 * Category cell to paths: a list of lists is taken as paths; a list of strings is one path; a
 * string is split on "|" into separate categories, each a path split on ">" (so both
 * "Action|Comedy" and "Beauty > Makeup > Eyes" read naturally).
 */
export function categoryPaths(v: unknown): string[][] | undefined {
  if (v === undefined || v === null) return [];
  if (typeof v === "string") {
    return v.split("|").map((p) => p.split(">").map((c) => c.trim()).filter((c) => c !== ""))
      .filter((p) => p.length > 0);
  }
  if (typeof v === "number") return [[String(v)]];
  if (Array.isArray(v)) {
    if (v.every((x) => typeof x === "string")) return v.length > 0 ? [v as string[]] : [];
    if (v.every((p) => Array.isArray(p) && p.every((x) => typeof x === "string"))) {
      return v as string[][];
    }
  }
  return undefined;
}
