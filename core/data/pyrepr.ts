/**
 * Python 3 `repr()` of JSON-like values (close to CPython's: C0/C1 controls, NBSP, soft hyphen
 * and lone surrogates are escaped, other characters kept): the inverse of pyliteral.ts, used to
 * write fixtures in the real Amazon 2014 meta format and to test the parser on round trips.
 */
import type { PyValue } from "./pyliteral.ts";

export function pyRepr(v: PyValue): string {
  if (v === null) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  if (typeof v === "number") {
    if (Number.isInteger(v) && Math.abs(v) < 1e16) return String(v);
    const s = String(v);
    return /[.e]/.test(s) ? s.replace(/e([+-])(\d)$/, "e$10$2") : s + ".0";
  }
  if (typeof v === "string") return reprString(v);
  if (Array.isArray(v)) return `[${v.map(pyRepr).join(", ")}]`;
  return `{${Object.entries(v).map(([k, x]) => `${reprString(k)}: ${pyRepr(x)}`).join(", ")}}`;
}

/** Python's str.__repr__: single quotes unless the text has ' and no ". */
function reprString(s: string): string {
  const q = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = q;
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === q || ch === "\\") out += "\\" + ch;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (cp < 0x20 || cp === 0x7f) out += "\\x" + cp.toString(16).padStart(2, "0");
    else if ((cp >= 0x80 && cp <= 0xa0) || cp === 0xad) out += "\\x" + cp.toString(16);
    else if (cp >= 0xd800 && cp < 0xe000) out += "\\u" + cp.toString(16);
    else out += ch;
  }
  return out + q;
}
