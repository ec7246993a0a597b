import assert from "node:assert/strict";
import { join } from "node:path";
import {
  decodeSafetensors,
  encodeSafetensors,
  getTensor,
  readSafetensors,
  tensor,
  writeSafetensors,
} from "../core/io/safetensors.ts";
import { DataError } from "../core/errors.ts";

function sample() {
  return {
    "b.ints": tensor(new Int32Array([1, -2, 3, 2147483647]), [2, 2]),
    "a.mask": tensor(new Uint8Array([1, 0, 1]), [3]),
    "c.f32": tensor(new Float32Array([0.5, -1.25, 3e-8, NaN, Infinity, -0]), [2, 3]),
    "d.f64": tensor(new Float64Array([1e300, Math.PI]), [2]),
    "e.i64": tensor(new BigInt64Array([-(2n ** 62n), 7n]), [1, 2]),
    "f.empty": tensor(new Float32Array(0), [0, 4]),
  };
}

Deno.test("safetensors: round trip keeps dtype, shape, values and metadata", () => {
  const t = sample();
  const bytes = encodeSafetensors(t, { format: "pt", note: "ünïcode" });
  const back = decodeSafetensors(bytes);
  assert.deepEqual(back.metadata, { format: "pt", note: "ünïcode" });
  assert.equal(back.tensors.size, 6);
  for (const [name, want] of Object.entries(t)) {
    const got = back.tensors.get(name)!;
    assert.equal(got.dtype, want.dtype, name);
    assert.deepEqual(got.shape, want.shape, name);
    assert.deepEqual([...got.data], [...want.data], name);
  }
  assert.ok(Object.is(back.tensors.get("c.f32")!.data[5], -0));
});

Deno.test("safetensors: bytes are deterministic and independent of insertion order", () => {
  const t = sample();
  const reversed = Object.fromEntries(Object.entries(t).reverse());
  assert.deepEqual(
    encodeSafetensors(t, { x: "1", a: "2" }),
    encodeSafetensors(reversed, { a: "2", x: "1" }),
  );
});

Deno.test("safetensors: exact layout of a small file (spec example)", () => {
  const bytes = encodeSafetensors({
    w: tensor(new Float32Array([1, 2]), [2]),
    m: tensor(new Uint8Array([7]), [1]),
    t: tensor(new Float64Array([0.5]), [1]),
  });
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal((8 + n) % 8, 0, "data starts 8-byte aligned");
  const header = new TextDecoder().decode(bytes.subarray(8, 8 + n));
  assert.equal(
    header.trimEnd(),
    '{"m":{"dtype":"U8","shape":[1],"data_offsets":[16,17]},' +
      '"t":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},' +
      '"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}',
  );
  const data = bytes.subarray(8 + n);
  assert.equal(data.length, 17);
  assert.deepEqual([...new Float64Array(data.slice(0, 8).buffer)], [0.5]);
  assert.deepEqual([...new Float32Array(data.slice(8, 16).buffer)], [1, 2]);
  assert.equal(data[16], 7);
});

Deno.test("safetensors: reads files with an unpadded header (copies misaligned tensors)", () => {
  const header = '{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'; // 55 bytes
  const h = new TextEncoder().encode(header);
  const bytes = new Uint8Array(8 + h.length + 8);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(h.length), true);
  bytes.set(h, 8);
  bytes.set(new Uint8Array(new Float32Array([3, 4]).buffer), 8 + h.length);
  const x = decodeSafetensors(bytes).tensors.get("x")!;
  assert.deepEqual([...x.data], [3, 4]);
});

Deno.test("safetensors: corrupt files are DataErrors naming the file and tensor", () => {
  const good = encodeSafetensors({ x: tensor(new Float32Array([1, 2, 3]), [3]) });
  assert.throws(() => decodeSafetensors(good.subarray(0, 4), "f.st"), /f\.st: not a safetensors/);
  assert.throws(() => decodeSafetensors(good.subarray(0, good.length - 4), "f.st"), (e) => {
    assert.ok(e instanceof DataError);
    assert.match(e.message, /^f\.st: x: data_offsets/);
    return true;
  });
  const huge = good.slice();
  new DataView(huge.buffer).setBigUint64(0, 1n << 40n, true);
  assert.throws(() => decodeSafetensors(huge, "f.st"), /header length/);
  const text = new TextDecoder().decode(good);
  const wrongShape = new TextEncoder().encode(text.replace('"shape":[3]', '"shape":[4]'));
  assert.throws(
    () => decodeSafetensors(wrongShape, "f.st"),
    /f\.st: x: shape \[4\] needs 16 bytes/,
  );
  const badType = new TextEncoder().encode(text.replace('"F32"', '"BF8"'));
  assert.throws(() => decodeSafetensors(badType, "f.st"), /f\.st: x: unsupported dtype/);
});

Deno.test("safetensors: writer rejects inconsistent tensors", () => {
  assert.throws(() => encodeSafetensors({ x: tensor(new Float32Array(3), [2, 2]) }), /needs 4/);
  assert.throws(
    () => encodeSafetensors({ x: { dtype: "F32", shape: [2], data: new Int32Array(2) } as never }),
    /not a Float32Array/,
  );
});

Deno.test("safetensors: file write/read and typed getters", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "t.safetensors");
    await writeSafetensors(path, sample(), { k: "v" });
    const f = await readSafetensors(path);
    assert.deepEqual([...getTensor(f, "b.ints", "I32", path).data], [1, -2, 3, 2147483647]);
    assert.throws(() => getTensor(f, "b.ints", "F32", path), /b\.ints: dtype I32, expected F32/);
    assert.throws(() => getTensor(f, "zz", "F32", path), /zz: tensor missing/);
    await assert.rejects(readSafetensors(join(dir, "nope")), /nope: no such file/);
    const names = [...Deno.readDirSync(dir)].map((e) => e.name);
    assert.deepEqual(names, ["t.safetensors"], "no temporary file left behind");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
