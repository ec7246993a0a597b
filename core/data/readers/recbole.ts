/**
 * RecBole atomic files (.inter, .item): tab-separated, no quoting, and a typed header such as
 * `user_id:token  item_id:token  timestamp:float`. Columns are named without their type.
 * token_seq / float_seq values are space-separated lists.
 */
import { basename } from "node:path";
import { DataError, UsageError } from "../../errors.ts";
import type { InteractionSink } from "../interactions.ts";
import { type ItemMeta, joinText } from "../item_meta.ts";
import { type SourceInfo, TextSource } from "../source.ts";
import { addInteraction, type MetaResult, type ReadContext } from "./context.ts";

export type RecboleType = "token" | "token_seq" | "float" | "float_seq";

export interface RecboleField {
  name: string;
  type: RecboleType;
}

export function parseRecboleHeader(text: string, file: string): RecboleField[] {
  const fields = text.split("\t").map((raw, k) => {
    const m = /^([^:\s]+):(token|token_seq|float|float_seq)$/.exec(raw.trim());
    if (!m) {
      throw new DataError(
        file,
        1,
        `column ${k + 1}`,
        `header '${raw}' is not NAME:TYPE (TYPE token, token_seq, float or float_seq)`,
      );
    }
    return { name: m[1], type: m[2] as RecboleType };
  });
  const seen = new Set<string>();
  for (const f of fields) {
    if (seen.has(f.name)) throw new DataError(file, 1, f.name, "column appears twice");
    seen.add(f.name);
  }
  return fields;
}

export function column(fields: RecboleField[], name: string, file: string, flag: string): number {
  const k = fields.findIndex((f) => f.name === name);
  if (k < 0) {
    throw new UsageError(
      `${file}: no column '${name}' (have ${fields.map((f) => f.name).join(", ")}); ` +
        `choose one with ${flag}`,
    );
  }
  return k;
}

async function* rows(
  src: TextSource,
  file: string,
  ctx: ReadContext,
): AsyncGenerator<{ header: RecboleField[] } | { cells: string[]; line: number }> {
  let header: RecboleField[] | null = null;
  for await (const [text, line] of src.lines()) {
    if (header === null) {
      header = parseRecboleHeader(text, file);
      yield { header };
      continue;
    }
    if (text === "") continue;
    const cells = text.split("\t");
    if (cells.length !== header.length) {
      ctx.issues.bad(
        file,
        line,
        "line",
        `${cells.length} columns, header has ${header.length}`,
        "wrong number of columns",
      );
      continue;
    }
    yield { cells, line };
  }
  if (header === null) throw new DataError(file, null, null, "empty file (no header)");
}

export interface RecboleInterColumns {
  user: string;
  item: string;
  time: string;
}

export async function readRecboleInter(
  path: string,
  cols: RecboleInterColumns,
  log: InteractionSink,
  ctx: ReadContext,
): Promise<SourceInfo> {
  const src = new TextSource(path, ctx.progress, `reading ${basename(path)}`);
  let u = -1, i = -1, t = -1;
  for await (const r of rows(src, path, ctx)) {
    if ("header" in r) {
      u = column(r.header, cols.user, path, "--user-col");
      i = column(r.header, cols.item, path, "--item-col");
      t = column(r.header, cols.time, path, "--time-col");
      continue;
    }
    addInteraction(log, ctx, path, r.line, cols, {
      user: r.cells[u],
      item: r.cells[i],
      time: r.cells[t],
    });
  }
  return src.info;
}

export interface RecboleItemColumns {
  item: string;
  /** Text columns; null = every column except the item id. */
  text: string[] | null;
  /** Category column; null = the first of class/categories/category/genre/genres present. */
  category: string | null;
  /** Title column; null = movie_title/title/name if present, else the first text column. */
  title: string | null;
  image: string | null;
}

const CATEGORY_GUESSES = ["class", "categories", "category", "genre", "genres"];
const TITLE_GUESSES = ["movie_title", "title", "name", "item_name"];

export async function readRecboleItems(
  path: string,
  cols: RecboleItemColumns,
  itemIndex: ReadonlyMap<string, number>,
  numItems: number,
  ctx: ReadContext,
): Promise<MetaResult> {
  const src = new TextSource(path, ctx.progress, `reading ${basename(path)}`);
  const items: (ItemMeta | null)[] = new Array(numItems + 1).fill(null);
  let idCol = -1;
  let textCols: number[] = [];
  let catCol = -1;
  let titleCol = -1;
  let imageCol = -1;
  let fields: RecboleField[] = [];
  for await (const r of rows(src, path, ctx)) {
    if ("header" in r) {
      fields = r.header;
      idCol = column(fields, cols.item, path, "--item-col");
      textCols = cols.text === null
        ? fields.map((_, k) => k).filter((k) => k !== idCol)
        : cols.text.map((c) => column(fields, c, path, "--text-cols"));
      const catName = cols.category ??
        CATEGORY_GUESSES.find((g) => fields.some((f) => f.name === g)) ?? null;
      catCol = catName === null ? -1 : column(fields, catName, path, "--category-col");
      const titleName = cols.title ?? TITLE_GUESSES.find((g) => fields.some((f) => f.name === g));
      titleCol = titleName !== undefined
        ? column(fields, titleName, path, "--title-col")
        : textCols[0] ?? -1;
      imageCol = cols.image === null ? -1 : column(fields, cols.image, path, "--image-col");
      continue;
    }
    const id = r.cells[idCol].trim();
    const i = itemIndex.get(id);
    if (i === undefined || items[i] !== null) continue;
    const cell = (k: number) => (k < 0 ? null : r.cells[k].trim() || null);
    // Each token of a token_seq category column is its own category (genres); a token column
    // holds one category.
    const catText = cell(catCol);
    const categories = catText === null
      ? []
      : fields[catCol].type === "token_seq"
      ? catText.split(/\s+/).map((c) => [c])
      : [[catText]];
    items[i] = {
      title: cell(titleCol),
      text: joinText(textCols.map(cell)),
      categories,
      image: cell(imageCol),
    };
  }
  return { items, source: src.info };
}
