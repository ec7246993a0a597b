/**
 * Timestamp parsing for interaction files. Values are unix time in seconds (or milliseconds with
 * unit "ms"), as numbers or numeric strings; ISO-8601 dates are accepted too since generic CSV
 * exports often carry them. Anything else, and anything outside 1970..2100, is bad input: an
 * out-of-range value is almost always a unit mix-up or a corrupt row.
 */

export type TimeUnit = "s" | "ms";

/** 2100-01-01T00:00:00Z. */
export const MAX_TIMESTAMP_S = 4102444800;

export const ISO_DATE =
  /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/;

export type TimestampResult = { ok: true; seconds: number } | { ok: false; problem: string };

export function parseTimestamp(value: unknown, unit: TimeUnit): TimestampResult {
  let n: number;
  if (typeof value === "number") n = value;
  else if (typeof value === "bigint") n = Number(value);
  else if (value instanceof Date) n = unit === "ms" ? value.getTime() : value.getTime() / 1000;
  else if (typeof value === "string") {
    const t = value.trim();
    if (t === "") return { ok: false, problem: "empty timestamp" };
    if (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(t)) n = Number(t);
    else if (ISO_DATE.test(t)) {
      // A date without a zone is taken as UTC so results do not depend on the machine.
      const zoned = /(Z|[+-]\d{2}:?\d{2})$/.test(t) || t.length === 10 ? t : t + "Z";
      const ms = Date.parse(zoned.replace(" ", "T"));
      if (Number.isNaN(ms)) return { ok: false, problem: `'${clip(t)}' is not a valid date` };
      n = unit === "ms" ? ms : ms / 1000;
    } else return { ok: false, problem: `'${clip(t)}' is not a number or ISO-8601 date` };
  } else if (value === null || value === undefined) {
    return { ok: false, problem: "missing" };
  } else return { ok: false, problem: `${typeof value} is not a timestamp` };
  if (!Number.isFinite(n)) return { ok: false, problem: `${n} is not a finite number` };
  const seconds = unit === "ms" ? n / 1000 : n;
  if (seconds < 0) return { ok: false, problem: `${n} is before 1970` };
  if (seconds > MAX_TIMESTAMP_S) {
    const hint = unit === "s" && seconds / 1000 <= MAX_TIMESTAMP_S
      ? " (milliseconds? use --time-unit ms)"
      : "";
    return { ok: false, problem: `${n} is after 2100-01-01${hint}` };
  }
  return { ok: true, seconds };
}

function clip(s: string): string {
  return s.length > 40 ? s.slice(0, 37) + "..." : s;
}
