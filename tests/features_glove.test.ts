// GloVe SIF text features: tokenisation, the streaming reader of the wink-embeddings layout, the
// SIF weights and common-component removal against a hand computation, and `duaf preprocess
// --text-features glove:FILE` end to end with a tiny vectors file written here.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { loadDataset } from "../core/data/dataset.ts";
import { DataError } from "../core/errors.ts";
import {
  GLOVE_PACKAGE,
  gloveTokens,
  readWordVectors,
  SIF_A,
  sifFeatures,
  type WordVectors,
} from "../core/features/glove.ts";
import { Rng } from "../core/random.ts";
import { runCli } from "./helpers/run_cli.ts";

const FIX = join(import.meta.dirname!, "../fixtures");
const ML_INTER = join(FIX, "ml-100k-mini/ml-100k-mini.inter.gz");
const ML_ITEM = join(FIX, "ml-100k-mini/ml-100k-mini.item");

/** A word-vector file in the package's layout: each vector followed by its norm and index. */
function winkJson(vectors: Record<string, number[]>, spaced = false): string {
  const words = Object.keys(vectors);
  const dim = vectors[words[0]].length;
  const withExtras = Object.fromEntries(
    words.map((w, i) => [w, [...vectors[w], Math.hypot(...vectors[w]), i]]),
  );
  // Words that look like JSON structure exercise the skipping of the "words" array.
  const doc = {
    precision: 8,
    l2NormIndex: dim,
    wordIndex: dim + 1,
    size: words.length,
    dimensions: dim,
    words: ["]", "}", '"', "\\", "vectors", "{", ...words],
    nested: { vectors: [1, [2, "]"]] },
    vectors: withExtras,
    unkVector: [...new Array(dim).fill(0), -1],
  };
  return JSON.stringify(doc, null, spaced ? 1 : undefined);
}

async function withFile<T>(text: string, f: (path: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "vectors.json");
    await Deno.writeTextFile(path, text);
    return await f(path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function vectorsOf(v: Record<string, number[]>): WordVectors {
  const words = Object.keys(v);
  const dim = v[words[0]].length;
  return {
    dim,
    index: new Map(words.map((w, i) => [w, i])),
    data: Float32Array.from(words.flatMap((w) => v[w])),
  };
}

Deno.test("glove: tokens are lower-case letter words; digits and punctuation separate", () => {
  assert.deepEqual(
    gloveTokens("Children's Sci-Fi, 3.4oz SPF30 c173 Café DON'T l\u2019Oréal!"),
    [["children"], ["sci-fi", "sci", "fi"], ["oz"], ["spf"], ["c"], ["cafe"], ["dont"], [
      "loreal",
    ]],
  );
  assert.deepEqual(gloveTokens("1995. 12-34 -- ..."), []);
});

Deno.test("glove: the reader keeps wanted words' first `dimensions` numbers, any chunking", async () => {
  const v: Record<string, number[]> = {
    the: [0.5, -1.25, 3],
    '"q"': [1e-3, 2.5e2, -1.5e-7], // JSON.stringify writes 1.5e-7 with an exponent
    "sci-fi": [7, 8, 9],
    apple: [-0.1, 0.2, -0.3],
  };
  for (const spaced of [false, true]) {
    await withFile(winkJson(v, spaced), async (path) => {
      const all = await readWordVectors(path);
      assert.equal(all.dim, 3);
      assert.deepEqual([...all.index.keys()], Object.keys(v));
      for (const [w, r] of all.index) {
        assert.deepEqual([...all.data.subarray(r * 3, r * 3 + 3)], v[w].map(Math.fround), w);
      }
      const bytes = (await Deno.readFile(path)).length;
      assert.equal(all.source.bytes, bytes);
      for (const chunkSize of [1, 2, 3, 7, 64]) {
        const some = await readWordVectors(path, {
          chunkSize,
          wanted: new Set(["apple", '"q"', "absent"]),
        });
        assert.deepEqual([...some.index.keys()], ['"q"', "apple"], `chunk ${chunkSize}`);
        assert.deepEqual([...some.data], [...v['"q"'], ...v.apple].map(Math.fround));
        assert.equal(some.source.sha256, all.source.sha256);
      }
    });
  }
});

Deno.test("glove: malformed vector files are one-line DataErrors", async () => {
  const cases: [string, RegExp][] = [
    ['{"words": ["a"]}', /no "vectors" object/],
    ['{"vectors": {"a": [1]}}', /no positive "dimensions" before "vectors"/],
    ['{"dimensions": 2, "vectors": {"a": [1]}}', /vectors\.a has 1 numbers, expected 2/],
    ['{"dimensions": 2, "vectors": {"a": [1, "x"]}}', /not a number/],
    ['{"dimensions": 2, "vectors": {"a": [1, 2], "b": [3', /truncated/],
    ["[1, 2]", /not a JSON object/],
  ];
  for (const [text, re] of cases) {
    await withFile(text, async (path) => {
      await assert.rejects(
        readWordVectors(path),
        (e) => e instanceof DataError && re.test(e.message),
      );
    });
  }
});

Deno.test("glove: SIF weights and common-component removal match a hand computation", () => {
  const vectors = vectorsOf({ red: [1, 0], apple: [0, 2], pie: [1, 1], the: [3, 1] });
  const texts = [null, "The red apple", "Apple pie", "the pie, the end", "zzz 42 !"];
  // Known-word counts: the 3, red 1, apple 2, pie 2 (8 in all; "end" and "zzz" are unknown).
  // With a = 1/8: weight a / (a + c/8) = 1 / (1 + c): the 1/4, red 1/2, apple 1/3, pie 1/3.
  const f = sifFeatures(texts, vectors, 1 / 8);
  const v = [
    [(3 / 4 + 1 / 2) / 3, (1 / 4 + 2 / 3) / 3], // (the + red + apple) / 3
    [(1 / 3) / 2, (2 / 3 + 1 / 3) / 2], // (apple + pie) / 2
    [(6 / 4 + 1 / 3) / 3, (2 / 4 + 1 / 3) / 3], // (the + pie + the) / 3
  ];
  // u: top eigenvector of G = sum v v^T (2 x 2, closed form).
  const g11 = v.reduce((s, r) => s + r[0] * r[0], 0);
  const g12 = v.reduce((s, r) => s + r[0] * r[1], 0);
  const g22 = v.reduce((s, r) => s + r[1] * r[1], 0);
  const lambda = (g11 + g22) / 2 + Math.sqrt(((g11 - g22) / 2) ** 2 + g12 * g12);
  const un = Math.hypot(g12, lambda - g11);
  const u = [g12 / un, (lambda - g11) / un];
  assert.equal(f.dim, 2);
  assert.deepEqual([...f.mask], [0, 1, 1, 1, 0]);
  for (let i = 0; i < 3; i++) {
    const p = u[0] * v[i][0] + u[1] * v[i][1];
    const want = [v[i][0] - p * u[0], v[i][1] - p * u[1]];
    const got = f.data.subarray((i + 1) * 2, (i + 2) * 2);
    for (let k = 0; k < 2; k++) assert.ok(Math.abs(got[k] - want[k]) < 1e-6, `item ${i + 1}`);
    // Removal is not a no-op here: each item had a share along u.
    assert.ok(Math.abs(p) > 0.1);
  }
  assert.deepEqual([...f.data.subarray(0, 2)], [0, 0]);
  assert.deepEqual([...f.data.subarray(8, 10)], [0, 0], "no known word: zero row");
  assert.equal(f.knownWords, 4);
  const c = f.commonDirection;
  assert.ok(Math.abs(Math.abs(c[0] * u[0] + c[1] * u[1]) - 1) < 1e-9, "the removed direction is u");
  assert.equal(SIF_A, 1e-3);
});

Deno.test("glove: a hyphenated word falls back to its known parts", () => {
  const vectors = vectorsOf({ sci: [1, 0], fi: [0, 1], "well-known": [2, 2], well: [5, 5] });
  const a = sifFeatures([null, "sci-fi", "well-known", "x"], vectors);
  const b = sifFeatures([null, "sci fi", "well-known", "x"], vectors);
  assert.deepEqual([...a.data], [...b.data]);
  assert.equal(a.knownWords, 3, "well-known is found whole; its part well is not used");
});

Deno.test("glove: same input, same bytes", () => {
  const rng = new Rng(3);
  const letter = (k: number) => String.fromCharCode(97 + k);
  const words = Array.from({ length: 50 }, (_, i) => `w${letter(i % 26)}${letter(i % 7)}`);
  const v: Record<string, number[]> = {};
  for (const w of words) v[w] = Array.from({ length: 8 }, () => rng.normal());
  const texts = [
    null,
    ...Array.from(
      { length: 40 },
      () => Array.from({ length: 1 + rng.int(6) }, () => words[rng.int(words.length)]).join(" "),
    ),
  ];
  const digest = (x: Float32Array) =>
    createHash("sha256").update(new Uint8Array(x.buffer)).digest("hex");
  const a = sifFeatures(texts, vectorsOf(v));
  const b = sifFeatures(texts.slice(), vectorsOf(v));
  assert.equal(digest(a.data), digest(b.data));
  assert.ok(a.data.some((x) => x !== 0));
});

/** Texts of the ml-100k-mini items as the RecBole reader joins them (all non-id columns). */
function miniItemTexts(): Map<string, string> {
  const lines = Deno.readTextFileSync(ML_ITEM).split("\n").slice(1).filter((l) => l !== "");
  return new Map(lines.map((l) => {
    const [id, ...rest] = l.split("\t").map((c) => c.trim());
    return [id, rest.filter((c) => c !== "").join(". ")];
  }));
}

Deno.test("glove: preprocess --text-features glove:FILE end to end on ml-100k-mini", async () => {
  const words = ["comedy", "drama", "action", "thriller", "romance", "children", "sci-fi", "the"];
  const v = Object.fromEntries(
    words.map((w, i) => [w, [Math.sin(i + 1), Math.cos(2 * i + 1), (i % 3) - 1, 0.25 * i]]),
  );
  const tmp = await Deno.makeTempDir();
  try {
    const vec = join(tmp, "vectors.json");
    await Deno.writeTextFile(vec, winkJson(v));
    const args = (out: string, spec = `glove:${vec}`) => [
      "preprocess",
      "--format",
      "recbole",
      "--inter",
      ML_INTER,
      "--item",
      ML_ITEM,
      "--kcore",
      "0",
      "--text-features",
      spec,
      "--out",
      join(tmp, out),
      "--quiet",
    ];
    const r = await runCli(args("a"));
    assert.equal(r.code, 0, r.stderr);
    const ds = await loadDataset(join(tmp, "a"));
    const text = ds.text!;
    assert.equal(text.dim, 4);
    assert.equal(text.source, `glove-sif:${vec}`);
    assert.ok(ds.manifest.sources.some((s) => s.path === vec));

    const byId = miniItemTexts();
    const ids = ds.itemIds();
    const texts = [null, ...ids.slice(1).map((id) => byId.get(id) ?? null)];
    const want = sifFeatures(texts, await readWordVectors(vec));
    assert.deepEqual([...text.mask], [...want.mask]);
    assert.equal(
      createHash("sha256").update(text.data).digest("hex"),
      createHash("sha256").update(new Uint8Array(want.data.buffer)).digest("hex"),
    );
    const missing = want.mask.reduce((s, m, i) => s + (i > 0 && m === 0 ? 1 : 0), 0);
    assert.ok(missing > 0 && missing < ds.numItems, "some items have no known word");
    assert.equal(JSON.parse(r.stdout).coverage.text, (ds.numItems - missing) / ds.numItems);

    const r2 = await runCli(args("b"));
    assert.equal(r2.code, 0, r2.stderr);
    const bytes = (d: string) => Deno.readFileSync(join(tmp, d, "items.safetensors"));
    assert.deepEqual(bytes("a"), bytes("b"), "same input, same bytes");

    const bad = await runCli(args("c", "glove:"));
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /glove:FILE needs a file/);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("glove: the package is pinned by its own lockfile, not the project's", () => {
  const lock = JSON.parse(
    Deno.readTextFileSync(join(import.meta.dirname!, "../core/features/glove_vectors.lock")),
  );
  assert.ok(`npm:${GLOVE_PACKAGE}` in lock.specifiers);
  assert.match(lock.npm[`${GLOVE_PACKAGE}_wink-nlp@2.4.0`].integrity, /^sha512-/);
  // Deno installs every package deno.json or deno.lock names on every run: naming it there
  // would make each run fetch 118 MB.
  for (const f of ["../deno.json", "../deno.lock"]) {
    assert.ok(!Deno.readTextFileSync(join(import.meta.dirname!, f)).includes("wink-embeddings"), f);
  }
});
