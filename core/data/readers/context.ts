/** What every reader needs besides its file: the bad-input policy, progress and time unit. */
import type { Progress } from "../../progress.ts";
import type { Issues } from "../issues.ts";
import type { InteractionSink } from "../interactions.ts";
import type { ItemMeta } from "../item_meta.ts";
import type { SourceInfo } from "../source.ts";
import { parseTimestamp, type TimeUnit } from "../timestamps.ts";

export interface ReadContext {
  issues: Issues;
  progress?: Progress;
  timeUnit: TimeUnit;
}

/** Item side information by final item index (index 0 and items without a row stay null). */
export type ItemTable = (ItemMeta | null)[];

export interface MetaResult {
  items: ItemTable;
  source: SourceInfo;
}

/**
 * Validates and adds one interaction row; reports the first bad field and returns false.
 * Ids may be strings or integers (JSON/Parquet); anything else is bad input.
 */
export function addInteraction(
  log: InteractionSink,
  ctx: ReadContext,
  file: string,
  line: number,
  fields: { user: string; item: string; time: string },
  row: { user: unknown; item: unknown; time: unknown },
): boolean {
  const user = idValue(row.user);
  if (user === null) {
    ctx.issues.bad(file, line, fields.user, describeBadId(row.user), "missing or not an id");
    return false;
  }
  const item = idValue(row.item);
  if (item === null) {
    ctx.issues.bad(file, line, fields.item, describeBadId(row.item), "missing or not an id");
    return false;
  }
  const t = parseTimestamp(row.time, ctx.timeUnit);
  if (!t.ok) {
    ctx.issues.bad(file, line, fields.time, t.problem, "missing, non-numeric or out of range");
    return false;
  }
  log.add(user, item, t.seconds);
  return true;
}

/** A usable id: a non-empty string (trimmed) or an integer. */
export function idValue(v: unknown): string | null {
  if (typeof v === "string") {
    const t = v.trim();
    return t === "" ? null : t;
  }
  if (typeof v === "number" && Number.isInteger(v)) return String(v);
  if (typeof v === "bigint") return String(v);
  return null;
}

function describeBadId(v: unknown): string {
  if (v === undefined || v === null) return "missing";
  if (typeof v === "string") return "empty";
  return `${JSON.stringify(v)?.slice(0, 40)} is not a string or integer id`;
}

/** Optional text field: strings pass, numbers are stringified, lists of strings are joined. */
export function textValue(v: unknown): string | null | undefined {
  if (v === undefined || v === null) return null;
  if (typeof v === "string") return v.trim() === "" ? null : v;
  if (typeof v === "number" || typeof v === "bigint") return String(v);
  if (Array.isArray(v) && v.every((x) => typeof x === "string")) {
    const s = (v as string[]).filter((x) => x.trim() !== "").join(" ");
    return s === "" ? null : s;
  }
  return undefined; // wrong type
}
