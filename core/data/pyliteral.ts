/**
 * A safe parser for Python literals (what `repr()` of a dict of strings, numbers and lists
 * prints): the real Amazon 2014 meta dump writes one such dict per line. Nothing is evaluated.
 *
 * Supported: dict, list, tuple, set (as an array), str with ' " ''' """ quotes and u/b/r
 * prefixes, the usual backslash escapes (\n \t \xhh \uhhhh \Uhhhhhhhh octal ...), implicit
 * concatenation of adjacent strings, int (with _ separators), float, inf/nan through neither
 * (they are not literals), None/True/False, and JSON's null/true/false for leniency.
 */

export type PyValue =
  | null
  | boolean
  | number
  | string
  | PyValue[]
  | { [key: string]: PyValue };

export class PyLiteralError extends Error {
  constructor(readonly offset: number, message: string) {
    super(`${message} at character ${offset + 1}`);
    this.name = "PyLiteralError";
  }
}

const SIMPLE_ESCAPES: Record<string, string> = {
  "\\": "\\",
  "'": "'",
  '"': '"',
  a: "\x07",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
  v: "\v",
  "\n": "",
};

class Parser {
  i = 0;
  constructor(readonly s: string) {}

  fail(message: string, at = this.i): never {
    throw new PyLiteralError(at, message);
  }

  ws(): void {
    const s = this.s;
    while (this.i < s.length) {
      const c = s.charCodeAt(this.i);
      if (c === 32 || c === 9 || c === 10 || c === 13) this.i++;
      else break;
    }
  }

  value(): PyValue {
    this.ws();
    const c = this.s[this.i];
    if (c === undefined) this.fail("unexpected end of input");
    if (c === "{") return this.dictOrSet();
    if (c === "[") return this.sequence("]");
    if (c === "(") return this.sequence(")");
    if (c === "'" || c === '"') return this.strings();
    if (c === "-" || c === "+" || c === "." || (c >= "0" && c <= "9")) return this.number();
    const word = /^[A-Za-z_][A-Za-z0-9_]*/.exec(this.s.slice(this.i, this.i + 16))?.[0];
    if (word !== undefined) {
      const next = this.s[this.i + word.length];
      if (/^[uUbBrR]{1,2}$/.test(word) && (next === "'" || next === '"')) return this.strings();
      const consts: Record<string, PyValue> = {
        None: null,
        True: true,
        False: false,
        null: null,
        true: true,
        false: false,
      };
      if (Object.hasOwn(consts, word)) {
        this.i += word.length;
        return consts[word];
      }
      this.fail(`'${word}' is not a literal`);
    }
    this.fail(`unexpected character '${c}'`);
  }

  dictOrSet(): PyValue {
    const start = this.i++;
    this.ws();
    if (this.s[this.i] === "}") {
      this.i++;
      return {};
    }
    const first = this.value();
    this.ws();
    if (this.s[this.i] !== ":") {
      // A set literal: {a, b}. Sets are unordered in Python; keep the written order.
      const items = [first];
      while (this.s[this.i] === ",") {
        this.i++;
        this.ws();
        if (this.s[this.i] === "}") break;
        items.push(this.value());
        this.ws();
      }
      if (this.s[this.i] !== "}") this.fail("expected ',' or '}' in set", this.i);
      this.i++;
      return items;
    }
    const out: { [key: string]: PyValue } = {};
    let key: PyValue = first;
    for (;;) {
      if (typeof key !== "string" && typeof key !== "number" && typeof key !== "boolean") {
        this.fail("dict keys must be strings or numbers", start);
      }
      this.i++; // ':'
      const v = this.value();
      Object.defineProperty(out, String(key), {
        value: v,
        enumerable: true,
        writable: true,
        configurable: true,
      });
      this.ws();
      const c = this.s[this.i];
      if (c === "}") {
        this.i++;
        return out;
      }
      if (c !== ",") this.fail("expected ',' or '}' in dict");
      this.i++;
      this.ws();
      if (this.s[this.i] === "}") {
        this.i++;
        return out;
      }
      key = this.value();
      this.ws();
      if (this.s[this.i] !== ":") this.fail("expected ':' in dict");
    }
  }

  sequence(close: string): PyValue[] {
    this.i++; // the opening bracket
    const out: PyValue[] = [];
    this.ws();
    if (this.s[this.i] === close) {
      this.i++;
      return out;
    }
    for (;;) {
      out.push(this.value());
      this.ws();
      const c = this.s[this.i];
      if (c === close) {
        this.i++;
        return out;
      }
      if (c !== ",") this.fail(`expected ',' or '${close}'`);
      this.i++;
      this.ws();
      if (this.s[this.i] === close) {
        this.i++;
        return out;
      }
    }
  }

  /** One string literal or several adjacent ones ('a' "b" == 'ab'). */
  strings(): string {
    let out = this.string();
    for (;;) {
      const save = this.i;
      this.ws();
      const c = this.s[this.i];
      const prefixed = /^[uUbBrR]{1,2}['"]/.test(this.s.slice(this.i, this.i + 3));
      if (c === "'" || c === '"' || prefixed) out += this.string();
      else {
        this.i = save;
        return out;
      }
    }
  }

  string(): string {
    const s = this.s;
    let raw = false;
    while (/[uUbBrR]/.test(s[this.i])) {
      if (s[this.i] === "r" || s[this.i] === "R") raw = true;
      this.i++;
    }
    const start = this.i;
    const q = s[this.i];
    const triple = s.startsWith(q + q + q, this.i);
    const quote = triple ? q + q + q : q;
    this.i += quote.length;
    let out = "";
    let run = this.i;
    for (;;) {
      if (this.i >= s.length) this.fail("unterminated string", start);
      const c = s[this.i];
      if (c === q && s.startsWith(quote, this.i)) {
        out += s.slice(run, this.i);
        this.i += quote.length;
        return out;
      }
      if (c === "\n" && !triple) this.fail("newline in string", start);
      if (c !== "\\") {
        this.i++;
        continue;
      }
      out += s.slice(run, this.i);
      const e = s[this.i + 1];
      if (e === undefined) this.fail("unterminated string", start);
      if (raw) {
        // Raw strings keep the backslash; it only stops a quote from ending the string.
        out += "\\" + e;
        this.i += 2;
      } else if (Object.hasOwn(SIMPLE_ESCAPES, e)) {
        out += SIMPLE_ESCAPES[e];
        this.i += 2;
      } else if (e === "x" || e === "u" || e === "U") {
        const n = e === "x" ? 2 : e === "u" ? 4 : 8;
        const hex = s.slice(this.i + 2, this.i + 2 + n);
        if (!new RegExp(`^[0-9a-fA-F]{${n}}$`).test(hex)) this.fail(`bad \\${e} escape`);
        const cp = parseInt(hex, 16);
        if (cp > 0x10ffff) this.fail(`bad \\${e} escape`);
        out += String.fromCodePoint(cp);
        this.i += 2 + n;
      } else if (e >= "0" && e <= "7") {
        const oct = /^[0-7]{1,3}/.exec(s.slice(this.i + 1, this.i + 4))![0];
        out += String.fromCodePoint(parseInt(oct, 8));
        this.i += 1 + oct.length;
      } else if (e === "N") {
        this.fail("\\N{...} escapes are not supported");
      } else {
        // Python keeps unknown escapes verbatim.
        out += "\\" + e;
        this.i += 2;
      }
      run = this.i;
    }
  }

  number(): number {
    const m = /^[+-]?(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?/.exec(
      this.s.slice(this.i, this.i + 64),
    );
    if (!m) this.fail("bad number");
    const text = m[0];
    if (/^[+-]?0\d/.test(text) && !/[.eE]/.test(text)) this.fail("leading zeros in integer");
    this.i += text.length;
    const n = Number(text.replaceAll("_", ""));
    if (Number.isNaN(n)) this.fail("bad number", this.i - text.length);
    return n;
  }
}

/** Parses one Python literal; trailing text other than whitespace is an error. */
export function parsePyLiteral(text: string): PyValue {
  const p = new Parser(text);
  const v = p.value();
  p.ws();
  if (p.i < text.length) p.fail("unexpected text after the literal");
  return v;
}

/**
 * Parses a line that is either JSON or a Python literal (JSON first: it is the fast path and
 * most lines of JSON dumps parse there).
 */
export function parseJsonOrPyLiteral(text: string): PyValue {
  try {
    return JSON.parse(text);
  } catch {
    return parsePyLiteral(text);
  }
}
