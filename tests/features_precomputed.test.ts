// Precomputed feature readers (.npy + ids file, .safetensors, JSONL): placement by item index,
// masks, and every bad-input case in strict and lenient mode.
import assert from "node:assert/strict";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { DataError, UsageError } from "../core/errors.ts";
import { readFeatureFile } from "../core/features/precomputed.ts";
import { floatToHalf, halfToFloat, npyMatrixBytes, parseNpyMatrix } from "../core/features/npy.ts";
import { tensor, writeSafetensors } from "../core/io/safetensors.ts";

// Items a..d get indices 1..4; row 0 is padding.
const ITEMS = new Map([["a", 1], ["b", 2], ["c", 3], ["d", 4]]);
const N = 4;

/** numpy.save's byte layout (format 1.0) for a 2-D array given in row-major order. */
function npyBytes(
  descr: string,
  shape: number[],
  values: number[],
  fortran = false,
): Uint8Array {
  let header = `{'descr': '${descr}', 'fortran_order': ${fortran ? "True" : "False"}, ` +
    `'shape': (${shape.join(", ")}${shape.length === 1 ? "," : ""}), }`;
  header += " ".repeat(63 - ((10 + header.length) % 64)) + "\n";
  const size = Number(descr.slice(2));
  const little = descr[0] !== ">";
  const body = new DataView(new ArrayBuffer(values.length * size));
  const [rows, cols] = [shape[0], shape[1] ?? 1];
  values.forEach((v, i) => {
    const r = Math.floor(i / cols);
    const c = i % cols;
    const at = (fortran ? c * rows + r : i) * size;
    if (size === 4) body.setFloat32(at, v, little);
    else if (size === 8) body.setFloat64(at, v, little);
    else body.setUint16(at, v, little); // float16 values are given as raw bits
  });
  const out = new Uint8Array(10 + header.length + body.byteLength);
  out.set([0x93, ..."NUMPY"].map((c) => typeof c === "number" ? c : c.charCodeAt(0)));
  out[6] = 1;
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  out.set(new Uint8Array(body.buffer), 10 + header.length);
  return out;
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "duaf-features-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function rejectsWith(p: Promise<unknown>, message: string): Promise<void> {
  return assert.rejects(p, (e) => {
    assert.ok(e instanceof DataError, `expected DataError, got ${e}`);
    assert.equal(e.message, message);
    return true;
  });
}

const row = (
  m: { data: Float32Array; dim: number },
  i: number,
) => [...m.data.subarray(i * m.dim, (i + 1) * m.dim)];

Deno.test("npy: rows follow the ids file into item order, row 0 and absent items stay 0", async () => {
  await withDir(async (dir) => {
    const p = join(dir, "text.npy");
    await Deno.writeFile(p, npyBytes("<f4", [3, 2], [1, 2, 3, 4, 5, 6]));
    await Deno.writeTextFile(join(dir, "text.ids.txt"), "c\na\nd\n");
    const m = await readFeatureFile(p, ITEMS, N, { strict: true });
    assert.equal(m.dim, 2);
    assert.deepEqual([...m.mask], [0, 1, 0, 1, 1]);
    assert.deepEqual(row(m, 0), [0, 0]);
    assert.deepEqual(row(m, 1), [3, 4]); // a
    assert.deepEqual(row(m, 2), [0, 0]); // b: no vector
    assert.deepEqual(row(m, 3), [1, 2]); // c
    assert.deepEqual(row(m, 4), [5, 6]); // d
    assert.equal(m.skipped, 0);
    assert.equal(m.source, `npy:${p}`);
  });
});

Deno.test("npy: float64, float16, big-endian, Fortran order and X.npy.ids.txt", async () => {
  await withDir(async (dir) => {
    const ids = "a\nb\n";
    const cases: [string, Uint8Array, number[][]][] = [
      ["f8.npy", npyBytes("<f8", [2, 3], [0.5, -1, 2, 3, 4, 1e-3]), [[0.5, -1, 2], [3, 4, 1e-3]]],
      // float16 bits: 0x3c00 = 1, 0xc000 = -2, 0x3800 = 0.5, 0x0001 = 2^-24 (subnormal)
      ["f2.npy", npyBytes("<f2", [2, 2], [0x3c00, 0xc000, 0x3800, 0x0001]), [[1, -2], [
        0.5,
        2 ** -24,
      ]]],
      ["be.npy", npyBytes(">f4", [2, 2], [1.5, 2.5, 3.5, 4.5]), [[1.5, 2.5], [3.5, 4.5]]],
      ["fo.npy", npyBytes("<f4", [2, 3], [1, 2, 3, 4, 5, 6], true), [[1, 2, 3], [4, 5, 6]]],
    ];
    for (const [name, bytes, want] of cases) {
      await Deno.writeFile(join(dir, name), bytes);
      await Deno.writeTextFile(join(dir, name + ".ids.txt"), ids);
      const m = await readFeatureFile(join(dir, name), ITEMS, N, { strict: true });
      assert.deepEqual(row(m, 1), want[0].map(Math.fround), name);
      assert.deepEqual(row(m, 2), want[1].map(Math.fround), name);
    }
  });
});

Deno.test("npy: halfToFloat covers infinities and NaN", () => {
  assert.equal(halfToFloat(0x7c00), Infinity);
  assert.equal(halfToFloat(0xfc00), -Infinity);
  assert.ok(Number.isNaN(halfToFloat(0x7e00)));
  assert.equal(halfToFloat(0x7bff), 65504);
});

Deno.test("npy: unknown ids, repeated ids and NaN/Inf: strict errors, lenient skips", async () => {
  await withDir(async (dir) => {
    const p = join(dir, "f.npy");
    const idsPath = join(dir, "f.ids.txt");
    await Deno.writeFile(p, npyBytes("<f4", [4, 3], [1, 1, 1, 2, 2, NaN, 3, 3, 3, 4, 4, 4]));
    await Deno.writeTextFile(idsPath, "a\nb\nzz\na\n");
    await rejectsWith(
      readFeatureFile(p, ITEMS, N, { strict: true }),
      `${p}: row 1 (item "b"), column 2 is NaN`,
    );
    const m = await readFeatureFile(p, ITEMS, N, { strict: false });
    assert.equal(m.skipped, 3); // b (NaN), zz (unknown), second a
    assert.deepEqual([...m.mask], [0, 1, 0, 0, 0]);
    assert.deepEqual(row(m, 1), [1, 1, 1]);
    assert.deepEqual(row(m, 2), [0, 0, 0]); // NaN row leaves nothing behind

    await Deno.writeFile(p, npyBytes("<f8", [2, 1], [1, 1e39]));
    await Deno.writeTextFile(idsPath, "a\nzz\n");
    await rejectsWith(
      readFeatureFile(p, ITEMS, N, { strict: true }),
      `${idsPath}:2: id: unknown item "zz" (row 1 of ${p})`,
    );
    await Deno.writeTextFile(idsPath, "a\nb\n");
    await rejectsWith(
      readFeatureFile(p, ITEMS, N, { strict: true }),
      `${p}: row 1 (item "b"), column 0 is 1e+39 (outside the float32 range)`,
    );
    await Deno.writeTextFile(idsPath, "a\na\n");
    await Deno.writeFile(p, npyBytes("<f4", [2, 1], [1, 2]));
    await rejectsWith(
      readFeatureFile(p, ITEMS, N, { strict: true }),
      `${idsPath}:2: id: item "a" has a second vector (row 1 of ${p})`,
    );
  });
});

Deno.test("npy: malformed files are DataErrors naming the file", async () => {
  await withDir(async (dir) => {
    const p = join(dir, "f.npy");
    const idsPath = join(dir, "f.ids.txt");
    const check = async (bytes: Uint8Array, ids: string | null, message: string) => {
      await Deno.writeFile(p, bytes);
      if (ids === null) await Deno.remove(idsPath).catch(() => {});
      else await Deno.writeTextFile(idsPath, ids);
      await rejectsWith(readFeatureFile(p, ITEMS, N, { strict: false }), message);
    };
    await check(
      npyBytes("<f4", [1, 2, 2], [1, 2, 3, 4]),
      "a\n",
      `${p}: features must be a 2-D array [items, dim], got shape (1, 2, 2)`,
    );
    await check(
      npyBytes("<i8", [1, 2], [1, 2]),
      "a\n",
      `${p}: dtype '<i8' is not supported (want float16, float32 or float64)`,
    );
    await check(
      npyBytes("<f4", [2, 2], [1, 2, 3, 4]).slice(0, -4),
      "a\nb\n",
      `${p}: data has 12 bytes but shape (2, 2) of '<f4' needs 16`,
    );
    await check(
      new TextEncoder().encode("a,b\n1,2\n"),
      "a\n",
      `${p}: not a .npy file (missing \\x93NUMPY magic)`,
    );
    await check(
      npyBytes("<f4", [2, 2], [1, 2, 3, 4]),
      "a\n",
      `${idsPath}: has 1 ids but ${p} has 2 rows`,
    );
    await check(
      npyBytes("<f4", [2, 2], [1, 2, 3, 4]),
      "a\n\nb\n",
      `${idsPath}: has 3 ids but ${p} has 2 rows`,
    );
    await check(npyBytes("<f4", [2, 2], [1, 2, 3, 4]), "a\n \n", `${idsPath}:2: id: empty item id`);
    await check(
      npyBytes("<f4", [1, 2], [1, 2]),
      null,
      `${p}: needs its item ids in ${idsPath} (one id per line, in row order)`,
    );
  });
});

Deno.test("safetensors: 'features' rows follow __metadata__.ids", async () => {
  await withDir(async (dir) => {
    const p = join(dir, "img.safetensors");
    await writeSafetensors(p, { features: tensor(new Float64Array([1, 2, 3, 4]), [2, 2]) }, {
      ids: JSON.stringify(["d", "b"]),
    });
    const m = await readFeatureFile(p, ITEMS, N, { strict: true });
    assert.equal(m.dim, 2);
    assert.deepEqual([...m.mask], [0, 0, 1, 0, 1]);
    assert.deepEqual(row(m, 4), [1, 2]);
    assert.deepEqual(row(m, 2), [3, 4]);
    assert.equal(m.source, `safetensors:${p}`);
  });
});

Deno.test("safetensors: bad inputs", async () => {
  await withDir(async (dir) => {
    const p = join(dir, "f.safetensors");
    const f32 = (v: number[], shape: number[]) => tensor(new Float32Array(v), shape);
    await writeSafetensors(p, { features: f32([1, 2, 3, 4], [2, 2]) }, { ids: '["a","zz"]' });
    await rejectsWith(
      readFeatureFile(p, ITEMS, N, { strict: true }),
      `${p}: __metadata__.ids: unknown item "zz" (row 1)`,
    );
    const lenient = await readFeatureFile(p, ITEMS, N, { strict: false });
    assert.equal(lenient.skipped, 1);
    assert.deepEqual([...lenient.mask], [0, 1, 0, 0, 0]);

    await writeSafetensors(p, { features: f32([1, Infinity], [2, 1]) }, { ids: '["a","b"]' });
    await rejectsWith(
      readFeatureFile(p, ITEMS, N, { strict: true }),
      `${p}: features: row 1 (item "b"), column 0 is Infinity`,
    );
    await writeSafetensors(p, { features: f32([1, 2], [2, 1]) });
    await rejectsWith(
      readFeatureFile(p, ITEMS, N, { strict: true }),
      `${p}: __metadata__.ids: missing: store the row ids as a JSON list string`,
    );
    await writeSafetensors(p, { features: f32([1, 2], [2, 1]) }, { ids: '["a"]' });
    await rejectsWith(
      readFeatureFile(p, ITEMS, N, { strict: true }),
      `${p}: __metadata__.ids: has 1 ids but "features" has 2 rows`,
    );
    await writeSafetensors(p, { emb: f32([1, 2], [2, 1]) }, { ids: '["a","b"]' });
    await rejectsWith(
      readFeatureFile(p, ITEMS, N, { strict: true }),
      `${p}: features: no tensor named "features" (found: emb)`,
    );
    await writeSafetensors(p, { features: f32([1, 2], [2]) }, { ids: '["a","b"]' });
    await rejectsWith(
      readFeatureFile(p, ITEMS, N, { strict: true }),
      `${p}: features: must be 2-D [items, dim], got [2]`,
    );
  });
});

Deno.test("jsonl: id -> vector lines, gzip and numeric ids", async () => {
  await withDir(async (dir) => {
    const text = [
      '{"id": "b", "vector": [0.25, -1, 3]}',
      "",
      '{"vector": [1, 2, 3], "id": "a", "extra": true}',
    ].join("\n") + "\n";
    const p = join(dir, "t.jsonl");
    await Deno.writeTextFile(p, text);
    const m = await readFeatureFile(p, ITEMS, N, { strict: true });
    assert.equal(m.dim, 3);
    assert.deepEqual([...m.mask], [0, 1, 1, 0, 0]);
    assert.deepEqual(row(m, 2), [0.25, -1, 3]);
    const gz = join(dir, "t.jsonl.gz");
    await Deno.writeFile(gz, gzipSync(new TextEncoder().encode(text)));
    const mz = await readFeatureFile(gz, ITEMS, N, { strict: true });
    assert.deepEqual(mz.data, m.data);
    assert.equal(mz.source, `jsonl:${gz}`);
    const num = join(dir, "n.jsonl");
    await Deno.writeTextFile(num, '{"id": 7, "vector": [1]}\n');
    const m7 = await readFeatureFile(num, new Map([["7", 1]]), 1, { strict: true });
    assert.deepEqual([...m7.data], [0, 1]);
  });
});

Deno.test("jsonl: every bad line is a strict error with its line, a lenient skip", async () => {
  await withDir(async (dir) => {
    const p = join(dir, "bad.jsonl");
    const lines = [
      '{"id": "a", "vector": [1, 2]}',
      '{"id": "b", "vector": [1, 2, 3]}',
      '{"id": "c", "vector": [NaN, 2]}',
      '{"id": "zz", "vector": [1, 2]}',
      '{"id": "a", "vector": [5, 6]}',
      "not json",
      '{"id": "d", "vector": [1, "2"]}',
      '{"id": "d", "vector": [1, 1e39]}',
      '{"vector": [1, 2]}',
      '["d", [1, 2]]',
      '{"id": "d", "vector": [3, 4]}',
    ];
    const expected = [
      null,
      `${p}:2: vector: has 3 values, expected 2 (the first vector's length)`,
      `${p}:3: vector: contains NaN or Infinity`,
      `${p}:4: id: unknown item "zz"`,
      `${p}:5: id: item "a" has a second vector`,
      null, // invalid JSON: message text comes from the JSON parser
      `${p}:7: vector: element 1 is "2", not a number`,
      `${p}:8: vector: element 1 is 1e+39 (outside the float32 range)`,
      `${p}:9: id: missing or not a string`,
      `${p}:10: expected an object {"id": ..., "vector": [...]}`,
    ];
    // Strict: each bad line, placed right after the good first line, stops the read.
    for (let i = 1; i < expected.length; i++) {
      const only = lines.map((l, j) => (j === 0 || j === i ? l : ""));
      await Deno.writeTextFile(p, only.join("\n"));
      const run = readFeatureFile(p, ITEMS, N, { strict: true });
      if (expected[i] !== null) await rejectsWith(run, expected[i]!);
      else {
        await assert.rejects(
          run,
          (e) => e instanceof DataError && e.message.startsWith(`${p}:${i + 1}: not valid JSON`),
        );
      }
    }
    await Deno.writeTextFile(p, lines.join("\n"));
    const notes: string[] = [];
    const progress = { start: () => ({ tick() {}, done() {} }), log: (m: string) => notes.push(m) };
    const m = await readFeatureFile(p, ITEMS, N, { strict: false, progress });
    assert.equal(m.skipped, 9);
    assert.deepEqual([...m.mask], [0, 1, 0, 0, 1]);
    assert.deepEqual(row(m, 1), [1, 2]);
    assert.deepEqual(row(m, 4), [3, 4]);
    assert.equal(notes.length, 6); // five examples and the total
    assert.equal(notes[0], `skipped: ${expected[1]}`);
    assert.match(notes[5], /^skipped 9 rows in all/);
  });
});

Deno.test("readFeatureFile: unknown extension and missing file", async () => {
  await assert.rejects(readFeatureFile("feat.csv", ITEMS, N, { strict: true }), UsageError);
  await assert.rejects(
    readFeatureFile("/nonexistent/feat.jsonl", ITEMS, N, { strict: true }),
    (e) => e instanceof DataError && e.message.startsWith("/nonexistent/feat.jsonl: cannot read"),
  );
});

Deno.test("npy writer: float32 and float16 matrices read back; float16 rounds to nearest even", () => {
  // Every finite half survives float -> half -> float; halfway cases go to the even neighbour.
  for (let h = 0; h < 0x10000; h++) {
    if (((h >> 10) & 0x1f) === 31) continue;
    assert.equal(floatToHalf(halfToFloat(h)), h);
  }
  assert.equal(floatToHalf(1 + 1 / 2048), 0x3c00);
  assert.equal(floatToHalf(1 + 3 / 2048), 0x3c02);
  assert.equal(floatToHalf(65520), 0x7c00);
  const values = [1.5, -2.25, 3e-3, 1e5, 0, 7];
  const f4 = parseNpyMatrix(npyMatrixBytes(2, 3, values), "f4.npy");
  const f2 = parseNpyMatrix(npyMatrixBytes(2, 3, values, "<f2"), "f2.npy");
  assert.deepEqual([f4.rows, f4.cols, f4.descr, f2.descr], [2, 3, "<f4", "<f2"]);
  for (let i = 0; i < 6; i++) {
    const [r, c] = [Math.floor(i / 3), i % 3];
    assert.equal(f4.get(r, c), Math.fround(values[i]));
    assert.equal(f2.get(r, c), i === 3 ? Infinity : halfToFloat(floatToHalf(values[i])));
  }
});
