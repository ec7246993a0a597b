// The inputs of `deno task bench scale`: Beauty replicated xK with suffixed ids, written as it is
// read, and the seeded Zipf catalog.
import assert from "node:assert/strict";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import {
  replicatedBeauty,
  replicateLines,
  suffixReview,
  zipfCatalog,
  zipfReviewLines,
} from "../tools/scale_data.ts";

const MINI = join(import.meta.dirname!, "../fixtures/beauty-mini");

function gzLines(path: string): string[] {
  return new TextDecoder().decode(gunzipSync(Deno.readFileSync(path))).split("\n").filter((l) =>
    l !== ""
  );
}

Deno.test("replicatedBeauty: every id suffixed per copy, counts times K, meta alongside", async () => {
  const cache = await Deno.makeTempDir();
  try {
    const K = 3;
    const src = gzLines(join(MINI, "reviews_Beauty_5.json.gz")).map((l) => JSON.parse(l));
    const srcMeta = gzLines(join(MINI, "meta_Beauty.json.gz"));
    const input = await replicatedBeauty(MINI, K, cache);
    const out = gzLines(input.reviews).map((l) => JSON.parse(l));
    assert.equal(out.length, K * src.length);
    const users = new Set(src.map((o) => o.reviewerID));
    const items = new Set(src.map((o) => o.asin));
    assert.equal(new Set(out.map((o) => o.reviewerID)).size, K * users.size);
    assert.equal(new Set(out.map((o) => o.asin)).size, K * items.size);
    // Copy-major: copy k's lines are the source's, in order, ids suffixed "-k".
    for (const k of [0, K - 1]) {
      for (const i of [0, 1, src.length - 1]) {
        const o = out[k * src.length + i];
        assert.equal(o.reviewerID, `${src[i].reviewerID}-${k}`);
        assert.equal(o.asin, `${src[i].asin}-${k}`);
        assert.equal(o.unixReviewTime, src[i].unixReviewTime);
      }
    }
    // The mini meta is Python dict literals; the copies are JSON with suffixed asins.
    const meta = gzLines(input.meta!).map((l) => JSON.parse(l));
    assert.equal(meta.length, K * srcMeta.length);
    assert.match(meta[srcMeta.length].asin, /-1$/);
    const metaAsins = new Set(meta.map((o) => o.asin));
    for (const o of out.slice(0, 50)) assert.ok(metaAsins.has(o.asin), o.asin);
    // A second call reuses the cached files.
    const mtime = Deno.statSync(input.reviews).mtime;
    await replicatedBeauty(MINI, K, cache);
    assert.deepEqual(Deno.statSync(input.reviews).mtime, mtime);
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("replicateLines streams: one source line read per line written", async () => {
  let read = 0;
  let opened = 0;
  async function* source() {
    opened++;
    for (let i = 0; i < 1000; i++) {
      read++;
      yield JSON.stringify({ reviewerID: `u${i}`, asin: `i${i}`, unixReviewTime: i });
    }
  }
  const it = replicateLines(source, 100, suffixReview)[Symbol.asyncIterator]();
  const first = await it.next();
  assert.equal(JSON.parse(first.value!).asin, "i0-0");
  assert.equal(read, 1);
  let n = 1;
  while (!(await it.next()).done) n++;
  assert.equal(n, 100_000);
  assert.equal(opened, 100);
});

Deno.test("zipfReviewLines: seeded, every item once at least, users of 5+, times increasing", () => {
  const opts = { items: 2000, interactions: 20_000, exponent: 1, meanLength: 10, seed: 7 };
  const lines = [...zipfReviewLines(opts)];
  assert.equal(lines.length, opts.interactions);
  assert.deepEqual([...zipfReviewLines(opts)].slice(0, 100), lines.slice(0, 100));
  assert.notDeepEqual(
    [...zipfReviewLines({ ...opts, seed: 8 })].slice(0, 100),
    lines.slice(0, 100),
  );
  const rows = lines.map((l) => JSON.parse(l));
  const counts = new Map<string, number>();
  for (const r of rows) counts.set(r.asin, (counts.get(r.asin) ?? 0) + 1);
  assert.equal(counts.size, opts.items);
  // Zipf with s = 1 puts about the same mass on every decade of ranks: ranks 10-19 against
  // 100-199 (a uniform law would give the second 10 times the first; the head is left out, as an
  // item counts at most once per user).
  const band = (lo: number, hi: number) => {
    let s = 0;
    for (let r = lo; r < hi; r++) s += counts.get(`Z${r}`)!;
    return s;
  };
  const ratio = band(100, 200) / band(10, 20);
  assert.ok(ratio > 0.7 && ratio < 1.4, `decade ratio ${ratio}`);
  const byUser = new Map<string, { n: number; last: number; items: Set<string> }>();
  for (const r of rows) {
    const u = byUser.get(r.reviewerID) ?? { n: 0, last: 0, items: new Set() };
    assert.ok(r.unixReviewTime > u.last);
    assert.ok(!u.items.has(r.asin), "no repeated item within a user");
    u.items.add(r.asin);
    u.n++;
    u.last = r.unixReviewTime;
    byUser.set(r.reviewerID, u);
  }
  const lengths = [...byUser.values()].map((u) => u.n);
  assert.ok(Math.min(...lengths) >= 5);
  const mean = rows.length / byUser.size;
  assert.ok(mean > 8.5 && mean < 11.5, `mean length ${mean}`);
});

Deno.test("zipfCatalog: written once under the cache, preprocessed without a k-core", async () => {
  const cache = await Deno.makeTempDir();
  try {
    const opts = { items: 500, interactions: 3000, exponent: 1, meanLength: 6, seed: 0 };
    const input = await zipfCatalog(opts, cache);
    assert.equal(gzLines(input.reviews).length, 3000);
    assert.deepEqual(input.preprocessArgs, ["--kcore=0"]);
    assert.equal(input.meta, undefined);
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});
