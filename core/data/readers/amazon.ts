/**
 * Amazon review dumps (McAuley lab), 2014 and 2018 editions.
 *   reviews: one JSON object per line with reviewerID, asin, unixReviewTime (other fields ignored).
 *   meta 2014: one Python dict literal (the real dump) or JSON object per line: asin, title,
 *     categories [[...], ...], brand, imUrl.
 *   meta 2018: JSON lines: asin, title, category [...], brand, imageURL / imageURLHighRes [...].
 * Meta rows of items that are not in the filtered interactions are skipped without parsing them
 * in full, so memory follows the output and the real 9 GB meta dumps stream through.
 */
import { basename } from "node:path";
import type { InteractionSink } from "../interactions.ts";
import { flatCategories, type ItemMeta, joinText } from "../item_meta.ts";
import { parseJsonOrPyLiteral, type PyValue } from "../pyliteral.ts";
import { type SourceInfo, TextSource } from "../source.ts";
import { addInteraction, type MetaResult, type ReadContext, textValue } from "./context.ts";

export type AmazonEdition = "amazon2014" | "amazon2018";

type Obj = { [key: string]: PyValue };

function parseObject(text: string, file: string, line: number, ctx: ReadContext): Obj | null {
  let v: PyValue;
  try {
    v = parseJsonOrPyLiteral(text);
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    ctx.issues.bad(file, line, "line", `not JSON or a Python dict literal (${why})`, "malformed");
    return null;
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    ctx.issues.bad(file, line, "line", "expected an object", "malformed");
    return null;
  }
  return v;
}

export async function readAmazonReviews(
  path: string,
  log: InteractionSink,
  ctx: ReadContext,
): Promise<SourceInfo> {
  const src = new TextSource(path, ctx.progress, `reading reviews ${basename(path)}`);
  const fields = { user: "reviewerID", item: "asin", time: "unixReviewTime" };
  for await (const [text, line] of src.lines()) {
    if (text.trim() === "") continue;
    const o = parseObject(text, path, line, ctx);
    if (o === null) continue;
    addInteraction(log, ctx, path, line, fields, {
      user: o.reviewerID,
      item: o.asin,
      time: o.unixReviewTime,
    });
  }
  return src.info;
}

// Finds the asin without parsing the whole line; lines it cannot read go through the parser.
const ASIN =
  /^\s*\{\s*(?:u?['"]asin['"]\s*:\s*u?['"]([^'"\\]+)['"]|.*?['"]asin['"]\s*:\s*u?['"]([^'"\\]+)['"])/;

export async function readAmazonMeta(
  path: string,
  edition: AmazonEdition,
  itemIndex: ReadonlyMap<string, number>,
  numItems: number,
  ctx: ReadContext,
): Promise<MetaResult> {
  const src = new TextSource(path, ctx.progress, `reading meta ${basename(path)}`);
  const items: (ItemMeta | null)[] = new Array(numItems + 1).fill(null);
  for await (const [text, line] of src.lines()) {
    if (text.trim() === "") continue;
    const m = ASIN.exec(text);
    if (m) {
      const i = itemIndex.get(m[1] ?? m[2]);
      if (i === undefined || items[i] !== null) continue;
    }
    const o = parseObject(text, path, line, ctx);
    if (o === null) continue;
    if (typeof o.asin !== "string" || o.asin.trim() === "") {
      ctx.issues.bad(path, line, "asin", o.asin === undefined ? "missing" : "not a string id");
      continue;
    }
    const i = itemIndex.get(o.asin.trim());
    if (i === undefined || items[i] !== null) continue; // not in the data, or a repeated row
    const meta = edition === "amazon2014"
      ? meta2014(o, path, line, ctx)
      : meta2018(o, path, line, ctx);
    if (meta !== null) items[i] = meta;
  }
  return { items, source: src.info };
}

function stringField(o: Obj, field: string, file: string, line: number, ctx: ReadContext) {
  const v = textValue(o[field]);
  if (v === undefined) {
    ctx.issues.bad(file, line, field, "expected a string", "wrong type");
    return undefined;
  }
  return v;
}

function isStringList(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === "string");
}

function meta2014(o: Obj, file: string, line: number, ctx: ReadContext): ItemMeta | null {
  const title = stringField(o, "title", file, line, ctx);
  const brand = stringField(o, "brand", file, line, ctx);
  const image = stringField(o, "imUrl", file, line, ctx);
  if (title === undefined || brand === undefined || image === undefined) return null;
  const cats = o.categories ?? [];
  if (!Array.isArray(cats) || !cats.every(isStringList)) {
    ctx.issues.bad(file, line, "categories", "expected a list of lists of strings", "wrong type");
    return null;
  }
  const categories = cats as string[][];
  return {
    title,
    text: joinText([title, flatCategories(categories).join(", "), brand]),
    categories,
    image,
  };
}

function meta2018(o: Obj, file: string, line: number, ctx: ReadContext): ItemMeta | null {
  const title = stringField(o, "title", file, line, ctx);
  const brand = stringField(o, "brand", file, line, ctx);
  if (title === undefined || brand === undefined) return null;
  const cat = o.category ?? [];
  if (!isStringList(cat)) {
    ctx.issues.bad(file, line, "category", "expected a list of strings", "wrong type");
    return null;
  }
  let image: string | null = null;
  for (const field of ["imageURLHighRes", "imageURL"]) {
    const v = o[field];
    if (v === undefined || v === null) continue;
    if (!isStringList(v)) {
      ctx.issues.bad(file, line, field, "expected a list of strings", "wrong type");
      return null;
    }
    image ??= v.find((s) => s.trim() !== "") ?? null;
  }
  const categories = cat.length > 0 ? [cat] : [];
  return {
    title,
    text: joinText([title, flatCategories(categories).join(", "), brand]),
    categories,
    image,
  };
}
