/**
 * `duaf preprocess --engine duckdb`: DuckDB reads the interaction file (out of core, on every
 * core) and runs buildSequences' dedup, iterative k-core and truncation in SQL. It returns the
 * same Sequences, stats and raw item list as the built-in engine, so the rest of preprocess (item
 * side information, features, the artifact) is the same code and writes the same bytes.
 *
 * Input order. Ties in time keep the input order, and users and items are indexed in order of
 * first appearance, so every row needs its input position. Parquet gives it (file_row_number);
 * for the text formats we rely on DuckDB's preserve_insertion_order (on by default, set here
 * anyway): CREATE TABLE AS SELECT from one reader stores rows in file order, so the table's rowid
 * is the row's position among the file's records. The byte-identity tests on real data with many
 * equal timestamps check it.
 *
 * Bad rows. Field values are validated in SQL with the built-in parser's rules (ids: trimmed
 * non-empty strings or integers; times: numbers or numeric strings, unit s or ms, 1970..2100).
 * When DuckDB cannot parse the file or finds a bad row, the format's built-in reader streams the
 * file once more into a counter (nothing is stored): in strict mode it stops at the first bad row
 * with the builtin's own `file:line: field: problem`; in lenient mode it fills the same skip
 * summary, and the number of rows it accepted must equal DuckDB's. Values the SQL does not parse
 * like JavaScript (ISO-8601 dates, integer ids beyond 2^53) stop the run with one line.
 */
import { basename } from "node:path";
import type { DuckDBConnection } from "@duckdb/node-api";
import { parse as csvParseSync } from "csv-parse/sync";
import { DataError, isDiskFull, ResourceError, UsageError } from "../../errors.ts";
import type { InteractionSink, Sequences } from "../interactions.ts";
import type { EngineResult, ResolvedOptions } from "../preprocess.ts";
import type { ReadContext } from "../readers/context.ts";
import { column, parseRecboleHeader } from "../readers/recbole.ts";
import { hashFile, type SourceInfo, TextSource } from "../source.ts";
import { ISO_DATE, MAX_TIMESTAMP_S } from "../timestamps.ts";

/** Re-reads the interactions with the format's built-in reader into `sink`. */
export type Rescan = (sink: InteractionSink) => Promise<SourceInfo>;

// What String.prototype.trim removes.
const JS_SPACE = " \t\n\v\f\r\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007" +
  "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff";
// parseTimestamp's numeric string (RE2's \d is ASCII, like JavaScript's).
const NUMBER = String.raw`[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?`;
const EXACT_INT = 2 ** 53;

const str = (s: string) => `'${s.replaceAll("'", "''")}'`;
const ident = (s: string) => `"${s.replaceAll('"', '""')}"`;

/** How a column's values arrive: JSON values, text cells, or a Parquet type. */
type Kind = "json" | "text" | "int" | "float";

interface Field {
  /** SQL expression of the raw value; for JSON, the prefix of its _type and _text columns. */
  sql: string;
  kind: Kind;
}

interface Parsed {
  /** The id or NULL when the built-in reader would reject it. */
  value: string;
  /** A condition under which the value is valid JavaScript but not parsed here. */
  unsupported: string | null;
}

// trim() with a character set is slow: only values that start or end with a space pay for it.
const SPACE_CLASS = "[" +
  [...JS_SPACE].map((ch) => `\\x{${ch.codePointAt(0)!.toString(16)}}`).join("") + "]";
const trimmed = (s: string) =>
  `CASE WHEN regexp_matches(${s}, ${str(`^${SPACE_CLASS}|${SPACE_CLASS}$`)}) ` +
  `THEN trim(${s}, ${str(JS_SPACE)}) ELSE ${s} END`;

function idSql({ sql: c, kind }: Field): Parsed {
  const text = (s: string) => `nullif(${trimmed(s)}, '')`;
  // A JSON or float number is an id when it is an integer (JavaScript prints 5.0 as "5").
  const integral = (d: string) =>
    `CASE WHEN ${d} = trunc(${d}) AND abs(${d}) <= ${EXACT_INT} ` +
    `THEN CAST(CAST(${d} AS BIGINT) AS VARCHAR) END`;
  switch (kind) {
    case "text":
      return { value: text(c), unsupported: null };
    case "int":
      return {
        value: `CAST(${c} AS VARCHAR)`,
        unsupported: null, // Parquet INT64 arrives as a bigint in the builtin too: exact
      };
    case "float":
      return {
        value: integral(`CAST(${c} AS DOUBLE)`),
        unsupported: `abs(CAST(${c} AS DOUBLE)) > ${EXACT_INT}`,
      };
    case "json": {
      const d = `CAST(${c}_text AS DOUBLE)`;
      return {
        value: `CASE ${c}_type WHEN 'VARCHAR' THEN ${text(`${c}_text`)} ` +
          `WHEN 'BIGINT' THEN ${integral(d)} WHEN 'UBIGINT' THEN ${integral(d)} ` +
          `WHEN 'DOUBLE' THEN ${integral(d)} END`,
        // JSON.parse rounds integers beyond 2^53 to a double: its digits are not the file's.
        unsupported: `${c}_type IN ('BIGINT', 'UBIGINT', 'DOUBLE') AND abs(${d}) > ${EXACT_INT}`,
      };
    }
  }
}

/** Seconds as a DOUBLE (NULL when the built-in parser would reject the value). */
function timeSql({ sql: c, kind }: Field, unit: "s" | "ms"): Parsed {
  const fromText = (s: string) => {
    const t = trimmed(s);
    return {
      n: `CASE WHEN regexp_full_match(${t}, ${str(NUMBER)}) THEN TRY_CAST(${t} AS DOUBLE) END`,
      iso: `regexp_full_match(${t}, ${str(ISO_DATE.source.slice(1, -1))})`,
    };
  };
  let n: string, iso: string | null;
  if (kind === "text") ({ n, iso } = fromText(c));
  else if (kind === "json") {
    const s = fromText(`${c}_text`);
    n = `CASE WHEN ${c}_type IN ('BIGINT', 'UBIGINT', 'DOUBLE') ` +
      `THEN CAST(${c}_text AS DOUBLE) WHEN ${c}_type = 'VARCHAR' THEN ${s.n} END`;
    iso = `${c}_type = 'VARCHAR' AND ${s.iso}`;
  } else {
    n = `CAST(${c} AS DOUBLE)`;
    iso = null;
  }
  const s = unit === "ms" ? `(${n}) / 1000` : `(${n})`;
  return {
    value: `CASE WHEN isfinite(${s}) AND ${s} >= 0 AND ${s} <= ${MAX_TIMESTAMP_S} THEN ${s} END`,
    unsupported: iso,
  };
}

/** The table function that reads the interactions, and how each of the three fields arrives. */
interface Reader {
  from(lenient: boolean): string;
  user: Field;
  item: Field;
  time: Field;
  /** Input position expression: Parquet's row number, else the stored table's rowid. */
  ordered: boolean;
}

async function isGzip(path: string): Promise<boolean> {
  const f = await Deno.open(path);
  try {
    const head = new Uint8Array(2);
    const n = await f.read(head);
    return n === 2 && head[0] === 0x1f && head[1] === 0x8b;
  } finally {
    f.close();
  }
}

async function firstLine(path: string): Promise<string> {
  for await (const [text] of new TextSource(path).lines()) return text;
  return "";
}

async function columnTypes(con: DuckDBConnection, from: string): Promise<Map<string, string>> {
  const rows = (await con.runAndReadAll(`DESCRIBE SELECT * FROM ${from}`)).getRows();
  return new Map(rows.map((r) => [String(r[0]), String(r[1])]));
}

function missing(path: string, have: Map<string, string>, cols: string[]): void {
  for (const c of cols) if (!have.has(c)) throw new UsageError(`${path}: no column '${c}'`);
}

async function openReader(
  o: ResolvedOptions,
  con: DuckDBConnection,
): Promise<Reader> {
  const path = o.interactions;
  const compression = (await isGzip(path)) ? "'gzip'" : "'uncompressed'";
  // JSON lines are read as lines (no JSON value holds a raw control character such as \x1f)
  // and parsed per line, so a malformed line is one bad row, as in the builtin.
  const json = (user: string, item: string, time: string): Reader => {
    const key = (k: string) => str("/" + k.replaceAll("~", "~0").replaceAll("/", "~1"));
    const field = (n: number): Field => ({ sql: `duaf_f${n}`, kind: "json" });
    // Each value's JSON type and text, once (JSON text is re-parsed on every access).
    const typed = [1, 2, 3].map((n) =>
      `json_type(duaf_json[${n}]) AS duaf_f${n}_type, duaf_json[${n}]->>'$' AS duaf_f${n}_text`
    ).join(", ");
    return {
      // One parse per line extracts the three values.
      from: () =>
        `(SELECT ${typed} FROM (SELECT CASE WHEN json_valid(line) THEN json_extract(line, ` +
        `[${key(user)}, ${key(item)}, ${key(time)}]) END AS duaf_json ` +
        `FROM read_csv(${str(path)}, header = false, auto_detect = false, delim = '\x1f', ` +
        `quote = '', escape = '', columns = {'line': 'VARCHAR'}, compression = ${compression}) ` +
        `WHERE ${trimmed("line")} <> ''))`,
      user: field(1),
      item: field(2),
      time: field(3),
      ordered: false,
    };
  };

  // Every column as text, with names we choose (c0, c1, ...): no sniffing of the dialect.
  const delimited = (
    names: string[],
    delim: string,
    quote: string,
  ): Omit<Reader, "user" | "item" | "time"> => ({
    from: (lenient) =>
      `read_csv(${str(path)}, header = true, auto_detect = false, delim = ${str(delim)}, ` +
      `quote = ${str(quote)}, escape = ${str(quote)}, compression = ${compression}, ` +
      `columns = {${names.map((_, k) => `'c${k}': 'VARCHAR'`).join(", ")}}, ` +
      `strict_mode = true, null_padding = false, ignore_errors = ${lenient})`,
    ordered: false,
  });
  const text = (k: number): Field => ({ sql: `c${k}`, kind: "text" });
  switch (o.format) {
    case "amazon2014":
    case "amazon2018":
      return json("reviewerID", "asin", "unixReviewTime");
    case "jsonl":
      return json(o.userCol!, o.itemCol!, o.timeCol!);
    case "recbole": {
      const header = parseRecboleHeader(await firstLine(path), path);
      const k = (name: string, flag: string) => column(header, name, path, flag);
      return {
        ...delimited(header.map((f) => f.name), "\t", ""),
        user: text(k(o.userCol ?? "user_id", "--user-col")),
        item: text(k(o.itemCol ?? "item_id", "--item-col")),
        time: text(k(o.timeCol ?? "timestamp", "--time-col")),
      };
    }
    case "csv":
    case "tsv": {
      // The header as csv-parse reads it (the builtin's parser; a repeated name is its error).
      const [delim, quote] = o.format === "csv" ? [",", '"'] : ["\t", ""];
      const names: string[] = csvParseSync(await firstLine(path), {
        delimiter: delim,
        quote: quote === "" ? false : quote,
        bom: true,
      })[0] ?? [];
      names.forEach((h, k) => {
        if (names.indexOf(h) !== k) {
          throw new DataError(path, 1, h, "column appears twice in the header");
        }
      });
      for (const c of [o.userCol!, o.itemCol!, o.timeCol!]) {
        if (!names.includes(c)) throw new UsageError(`${path}: no column '${c}'`);
      }
      return {
        ...delimited(names, delim, quote),
        user: text(names.indexOf(o.userCol!)),
        item: text(names.indexOf(o.itemCol!)),
        time: text(names.indexOf(o.timeCol!)),
      };
    }
    case "parquet": {
      const from = `read_parquet(${str(path)}, file_row_number = true)`;
      const have = await columnTypes(con, from);
      missing(path, have, [o.userCol!, o.itemCol!, o.timeCol!]);
      const field = (c: string): Field => {
        const type = have.get(c)!;
        const kind: Kind | null = type === "VARCHAR"
          ? "text"
          : /^U?(TINY|SMALL|BIG|HUGE)?INT(EGER)?$/.test(type)
          ? "int"
          : type === "DOUBLE" || type === "FLOAT"
          ? "float"
          : null;
        if (kind === null) {
          throw new UsageError(
            `${path}: column '${c}' of type ${type} is not read by --engine duckdb ` +
              `(strings and numbers are); use --engine builtin`,
          );
        }
        return { sql: ident(c), kind };
      };
      return {
        from: () => from,
        user: field(o.userCol!),
        item: field(o.itemCol!),
        time: field(o.timeCol!),
        ordered: true,
      };
    }
  }
}

/** DuckDB's out-of-memory and full-disk errors as duaf's resource error (one line, exit 2). */
function resourceError(e: unknown, tmp: string): ResourceError | null {
  const m = firstLineOf(e);
  const oom = /Out of Memory Error:\s*(.*)$/.exec(m);
  if (oom) {
    return new ResourceError(
      "DuckDB memory",
      null,
      oom[1],
      "set DUAF_DUCKDB_MEMORY higher (e.g. DUAF_DUCKDB_MEMORY=8GB)",
    );
  }
  if (isDiskFull(e)) {
    return new ResourceError("disk space", null, null, `DuckDB spills to ${tmp}: set TMPDIR`);
  }
  return null;
}

const firstLineOf = (e: unknown) => String((e as Error)?.message ?? e).split("\n")[0].trim();

async function count(con: DuckDBConnection, sql: string): Promise<number> {
  return Number((await con.runAndReadAll(sql)).getRows()[0][0]);
}

/** Builds the sequences of `o.interactions` with DuckDB (see the module comment). */
export async function duckdbSequences(
  o: ResolvedOptions,
  ctx: ReadContext,
  rescan: Rescan,
): Promise<EngineResult> {
  const path = o.interactions;
  const source = await hashFile(path); // also the builtin's error for a missing file
  // Loaded on first use, so a bundle built with @duckdb external (tools/device_pack.sh) runs
  // every other command where the native binding is absent.
  const { DuckDBInstance } = await import("@duckdb/node-api");
  const tmp = await Deno.makeTempDir({ prefix: "duaf-duckdb-" });
  const memory = Deno.env.get("DUAF_DUCKDB_MEMORY"); // e.g. 4GB; DuckDB's default: 80% of RAM
  const db = await DuckDBInstance.create(":memory:", {
    temp_directory: tmp, // spill here past the memory limit
    preserve_insertion_order: "true",
    ...(memory ? { memory_limit: memory } : {}),
  });
  const task = ctx.progress?.start(`reading ${basename(path)} (duckdb)`, null);
  try {
    const con = await db.connect();
    const reader = await openReader(o, con).catch(async (e) => {
      if (e instanceof DataError || e instanceof UsageError) throw e;
      // A file DuckDB cannot open (a corrupt Parquet footer, a bad header): the builtin's words.
      await rescan({ add() {} });
      throw new UsageError(
        `${path}: --engine duckdb cannot read it (${firstLineOf(e)}); use --engine builtin`,
      );
    });
    const user = idSql(reader.user), item = idSql(reader.item);
    const time = timeSql(reader.time, o.timeUnit);
    // The first field that is not supported, checked in the builtin's order (user, item, time).
    const why = `CASE WHEN ${user.unsupported ?? "false"} THEN 'integer ids beyond 2^53' ` +
      `WHEN duaf_user IS NULL THEN NULL WHEN ${item.unsupported ?? "false"} THEN ` +
      `'integer ids beyond 2^53' WHEN duaf_item IS NULL THEN NULL ` +
      `WHEN ${time.unsupported ?? "false"} THEN 'ISO-8601 date timestamps' END`;
    const load = (lenient: boolean) =>
      con.run(
        `CREATE OR REPLACE TABLE raw AS SELECT ${reader.ordered ? "file_row_number" : "NULL"} ` +
          `AS pos, duaf_user AS u, duaf_item AS i, duaf_time AS t, ${why} AS why ` +
          `FROM (SELECT *, ${user.value} AS duaf_user, ${item.value} AS duaf_item, ` +
          `${time.value} AS duaf_time FROM ${reader.from(lenient)})`,
      );
    let failed: string | null = null;
    try {
      await load(false);
    } catch (e) {
      const r = resourceError(e, tmp);
      if (r) throw r;
      failed = firstLineOf(e);
      if (!ctx.issues.strict) {
        await load(true).catch((e) => {
          throw resourceError(e, tmp) ?? new UsageError(
            `${path}: --engine duckdb cannot read it (${firstLineOf(e)}); use --engine builtin`,
          );
        });
      }
    }
    const loaded = failed === null || !ctx.issues.strict;
    const [good, bad] = loaded
      ? (await con.runAndReadAll(
        "SELECT count(*) FILTER (WHERE u IS NOT NULL AND i IS NOT NULL AND t IS NOT NULL), " +
          "count(*) FILTER (WHERE u IS NULL OR i IS NULL OR t IS NULL) FROM raw",
      )).getRows()[0].map(Number)
      : [0, 0];
    // The builtin reader words the problems: in strict mode it throws at its first bad row
    // (before any row this engine does not read, as the builtin would); in lenient mode it
    // counts them into ctx.issues, and must accept as many rows as DuckDB did.
    let accepted: number | null = null;
    const reread = async () => {
      accepted = 0;
      await rescan({ add: () => void accepted!++ });
    };
    if (ctx.issues.strict && (failed !== null || bad > 0)) await reread();
    const unsupported = loaded && (await con.runAndReadAll(
      `SELECT why, ${reader.ordered ? "pos" : "rowid"} + 1 FROM raw WHERE why IS NOT NULL ` +
        `ORDER BY ${reader.ordered ? "pos" : "rowid"} LIMIT 1`,
    )).getRows()[0];
    if (unsupported) {
      throw new UsageError(
        `${path}: --engine duckdb does not read ${unsupported[0]} (record ${unsupported[1]}); ` +
          `use --engine builtin`,
      );
    }
    if (failed !== null || bad > 0) {
      if (accepted === null) await reread();
      if (accepted === 0) {
        const why = ctx.issues.total > 0 ? ` (${ctx.issues.total} bad rows skipped)` : "";
        throw new DataError(path, null, null, `no interactions${why}`); // as the builtin says
      }
      if (ctx.issues.strict || accepted !== good) {
        throw new UsageError(
          `${path}: --engine duckdb reads ${failed ? "none" : good} of the rows the builtin ` +
            `reader accepts (${accepted})${failed ? ` (DuckDB: ${failed})` : ""}; ` +
            `use --engine builtin`,
        );
      }
    }
    const seqs = await buildInSql(con, o, reader.ordered);
    const rawItemIds = await strings(con, "SELECT i FROM r GROUP BY i ORDER BY min(pos)");
    const rawUsers = await count(con, "SELECT count(DISTINCT u) FROM r");
    task?.done();
    return { seqs, source, rawUsers, rawItemIds };
  } catch (e) {
    throw resourceError(e, tmp) ?? e;
  } finally {
    db.closeSync();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

/** buildSequences in SQL over the valid rows of `raw`. */
async function buildInSql(
  con: DuckDBConnection,
  o: ResolvedOptions,
  ordered: boolean,
): Promise<Sequences> {
  await con.run(
    `CREATE TABLE r AS SELECT ${ordered ? "pos" : "rowid"} AS pos, u, i, t FROM raw ` +
      "WHERE u IS NOT NULL AND i IS NOT NULL AND t IS NOT NULL",
  );
  await con.run("DROP TABLE raw");
  const input = await count(con, "SELECT count(*) FROM r");
  // Dedup: per (user, item) keep the earliest (first) or latest (last) by (time, input order).
  // (A window, not an aggregate of a (time, position) struct: that one cannot spill to disk.)
  const keep = o.dedup === "first" ? "t, pos" : "t DESC, pos DESC";
  await con.run(
    o.dedup === "none"
      ? "CREATE TABLE d AS SELECT * FROM r"
      : `CREATE TABLE d AS SELECT * FROM r ` +
        `QUALIFY row_number() OVER (PARTITION BY u, i ORDER BY ${keep}) = 1`,
  );
  const deduped = await count(con, "SELECT count(*) FROM d");
  // Iterative k-core, all under-threshold rows at once per round: each removed row is outside
  // every core of what is left, so the fixpoint is the same unique maximal core as the builtin's.
  let kcoreRounds = 0;
  if (o.userCore > 1 || o.itemCore > 1) {
    // (Windows, not DELETE ... IN (subquery): those hold their sets in memory.)
    for (let left = deduped, before = -1; left !== before;) {
      kcoreRounds++;
      await con.run(
        "CREATE TABLE k AS SELECT * FROM d QUALIFY " +
          `count(*) OVER (PARTITION BY u) >= ${o.userCore} AND ` +
          `count(*) OVER (PARTITION BY i) >= ${o.itemCore}`,
      );
      await con.run("DROP TABLE d");
      await con.run("ALTER TABLE k RENAME TO d");
      before = left;
      left = await count(con, "SELECT count(*) FROM d");
    }
  }
  const cored = await count(con, "SELECT count(*) FROM d");
  if (o.maxSeqLen > 0) {
    await con.run(
      "CREATE TABLE f AS SELECT * FROM d QUALIFY row_number() OVER " +
        `(PARTITION BY u ORDER BY t DESC, pos DESC) <= ${o.maxSeqLen}`,
    );
    await con.run("DROP TABLE d");
  } else await con.run("ALTER TABLE d RENAME TO f");
  // Indices in order of first appearance among the surviving rows, in input order.
  await con.run(
    "CREATE TABLE users AS SELECT u, row_number() OVER (ORDER BY min(pos)) - 1 AS ux, " +
      "count(*) AS n FROM f GROUP BY u",
  );
  await con.run(
    "CREATE TABLE items AS SELECT i, row_number() OVER (ORDER BY min(pos)) AS ix FROM f GROUP BY i",
  );
  const userIds = await strings(con, "SELECT u FROM users ORDER BY ux");
  const itemIds = await strings(con, "SELECT i FROM items ORDER BY ix");
  const seqOffsets = new Int32Array(userIds.length + 1);
  let w = 0;
  await chunks(con, "SELECT n FROM users ORDER BY ux", (cols, n) => {
    for (let k = 0; k < n; k++, w++) seqOffsets[w + 1] = seqOffsets[w] + Number(cols[0](k));
  });
  const total = seqOffsets[userIds.length];
  const seqItems = new Int32Array(total);
  const seqTimes = new Float64Array(total);
  w = 0;
  await chunks(
    con,
    "SELECT ix, t FROM f JOIN users USING (u) JOIN items USING (i) ORDER BY ux, t, pos",
    (cols, n) => {
      for (let k = 0; k < n; k++, w++) {
        seqItems[w] = Number(cols[0](k));
        seqTimes[w] = cols[1](k) as number;
      }
    },
  );
  return {
    userIds,
    itemIds,
    seqOffsets,
    seqItems,
    seqTimes,
    stats: {
      input,
      duplicates: input - deduped,
      kcoreRemoved: deduped - cored,
      kcoreRounds,
      truncated: cored - total,
    },
  };
}

/** Streams a query's result chunk by chunk; `cols[c](row)` reads a value. */
async function chunks(
  con: DuckDBConnection,
  sql: string,
  visit: (cols: ((row: number) => unknown)[], rows: number) => void,
): Promise<void> {
  const result = await con.stream(sql);
  for (;;) {
    const chunk = await result.fetchChunk();
    if (chunk === null || chunk.rowCount === 0) return;
    const cols = [];
    for (let c = 0; c < chunk.columnCount; c++) {
      const v = chunk.getColumnVector(c);
      cols.push((row: number) => v.getItem(row));
    }
    visit(cols, chunk.rowCount);
  }
}

async function strings(con: DuckDBConnection, sql: string): Promise<string[]> {
  const out: string[] = [];
  await chunks(con, sql, (cols, n) => {
    for (let k = 0; k < n; k++) out.push(cols[0](k) as string);
  });
  return out;
}
