import assert from "node:assert/strict";
import {
  parseJsonOrPyLiteral,
  parsePyLiteral,
  PyLiteralError,
  type PyValue,
} from "../core/data/pyliteral.ts";
import { pyRepr } from "../core/data/pyrepr.ts";
import { Rng } from "../core/random.ts";

// Lines printed by CPython 3 `repr()` of the dicts in the comments' source (see the test names).
const CPYTHON_REPRS: [string, PyValue][] = [
  [
    `{'asin': 'B001', 'title': 'L\\'Oreal "Paris" 50% off', 'categories': [['Beauty', 'Skin Care'], ['Brand: X']], 'price': 3.5, 'n': -12, 'ok': True, 'none': None, 'f': False}`,
    {
      asin: "B001",
      title: `L'Oreal "Paris" 50% off`,
      categories: [["Beauty", "Skin Care"], ["Brand: X"]],
      price: 3.5,
      n: -12,
      ok: true,
      none: null,
      f: false,
    },
  ],
  [
    `{'title': 'tab\\there\\nnewline \\\\ backslash', 'u': 'café \\xa0nbsp ’quote 😀 emoji', 'ctl': '\\x00\\x07\\x1b'}`,
    {
      title: "tab\there\nnewline \\ backslash",
      u: "café \u00a0nbsp \u2019quote \u{1F600} emoji",
      ctl: "\x00\x07\x1b",
    },
  ],
  [
    `{'empty': '', 'nested': [[], [[1, 2.0], ['a']], {'k': {'x': 1e-07}}], 'big': 1e+300, 'tuple': (1, 'two')}`,
    { empty: "", nested: [[], [[1, 2], ["a"]], { k: { x: 1e-7 } }], big: 1e300, tuple: [1, "two"] },
  ],
  [`{"it's": 'both \\' and "'}`, { "it's": `both ' and "` }],
];

Deno.test("pyliteral: parses CPython repr output exactly", () => {
  for (const [text, want] of CPYTHON_REPRS) assert.deepEqual(parsePyLiteral(text), want, text);
});

Deno.test("pyliteral: escapes, prefixes, triple quotes, concatenation", () => {
  assert.equal(parsePyLiteral(String.raw`'\u00e9\U0001F600\x41\101\7'`), "é\u{1F600}AA\x07");
  assert.equal(parsePyLiteral(String.raw`u'unicode' `), "unicode");
  assert.equal(parsePyLiteral(String.raw`r'C:\new\table'`), String.raw`C:\new\table`);
  assert.equal(parsePyLiteral(String.raw`'unknown \q escape'`), String.raw`unknown \q escape`);
  assert.equal(parsePyLiteral(`'''a 'quoted' "x"\nline'''`), `a 'quoted' "x"\nline`);
  assert.equal(parsePyLiteral(`'ab' "cd"  'ef'`), "abcdef");
  assert.deepEqual(parsePyLiteral("{'a', 'b',}"), ["a", "b"]);
  assert.deepEqual(parsePyLiteral("[1, 2,]"), [1, 2]);
  assert.deepEqual(parsePyLiteral("(1,)"), [1]);
  assert.deepEqual(parsePyLiteral("{}"), {});
  assert.deepEqual(parsePyLiteral("{1: 'int key', True: 'bool'}"), { 1: "int key", true: "bool" });
  assert.deepEqual(parsePyLiteral("[1_000, -0.5, .5, 5., 1E3, +2]"), [1000, -0.5, 0.5, 5, 1000, 2]);
  assert.deepEqual(parsePyLiteral('{"a": null, "b": true}'), { a: null, b: true });
});

Deno.test("pyliteral: __proto__ keys stay plain data", () => {
  const v = parsePyLiteral("{'__proto__': {'polluted': 1}}") as Record<string, unknown>;
  assert.deepEqual(Object.keys(v), ["__proto__"]);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

Deno.test("pyliteral: rejects what is not a literal, with a position", () => {
  const bad = [
    "{'a': 1",
    "{'a' 1}",
    "['unterminated]",
    "'newline\nin string'",
    "__import__('os')",
    "{'a': float('inf')}",
    "[1, 2] trailing",
    "'\\xZZ'",
    "0123",
    "",
    "{'k': [1, 2}",
  ];
  for (const text of bad) assert.throws(() => parsePyLiteral(text), PyLiteralError, text);
  assert.throws(() => parsePyLiteral("{'a': 1"), /at character 8/);
});

Deno.test("pyliteral: JSON lines take the JSON path, dict lines the Python path", () => {
  assert.deepEqual(parseJsonOrPyLiteral('{"asin": "X", "n": [1]}'), { asin: "X", n: [1] });
  assert.deepEqual(parseJsonOrPyLiteral("{'asin': 'X', 'n': (1,)}"), { asin: "X", n: [1] });
});

function randomString(rng: Rng): string {
  const pool = [
    "a",
    "Z",
    " ",
    "'",
    '"',
    "\\",
    "\n",
    "\t",
    "é",
    "’",
    "\u{1F600}",
    "\x00",
    "\xa0",
    "0",
  ];
  let s = "";
  for (let n = rng.int(8); n > 0; n--) s += pool[rng.int(pool.length)];
  return s;
}

function randomValue(rng: Rng, depth: number): PyValue {
  const kind = rng.int(depth > 2 ? 5 : 7);
  if (kind === 0) return null;
  if (kind === 1) return rng.uniform() < 0.5;
  if (kind === 2) return rng.int(2000) - 1000;
  if (kind === 3) return (rng.uniform() - 0.5) * 10 ** (rng.int(40) - 20);
  if (kind === 4) return randomString(rng);
  if (kind === 5) return Array.from({ length: rng.int(4) }, () => randomValue(rng, depth + 1));
  const o: Record<string, PyValue> = {};
  for (let n = rng.int(4); n > 0; n--) o[randomString(rng) + "k"] = randomValue(rng, depth + 1);
  return o;
}

Deno.test("pyliteral: round trip through repr on random values", () => {
  const rng = new Rng(7);
  for (let t = 0; t < 500; t++) {
    const v = randomValue(rng, 0);
    assert.deepEqual(parsePyLiteral(pyRepr(v)), v, pyRepr(v));
  }
});
