import assert from "node:assert/strict";
import { buildSequences, InteractionLog, type SequenceOptions } from "../core/data/interactions.ts";
import { buildCategoryVocab, categoryLabel } from "../core/data/categories.ts";
import { parseTimestamp } from "../core/data/timestamps.ts";
import { Rng } from "../core/random.ts";

type Row = [user: string, item: string, time: number];

function logOf(rows: Row[]): InteractionLog {
  const log = new InteractionLog();
  for (const [u, i, t] of rows) log.add(u, i, t);
  return log;
}

const opts = (o: Partial<SequenceOptions> = {}): SequenceOptions => ({
  dedup: "first",
  userCore: 0,
  itemCore: 0,
  maxSeqLen: 0,
  ...o,
});

/** Sequences as {userId: [[itemId, time], ...]} for readable assertions. */
function asObject(s: ReturnType<typeof buildSequences>) {
  const out: Record<string, [string, number][]> = {};
  s.userIds.forEach((u, k) => {
    out[u] = [];
    for (let e = s.seqOffsets[k]; e < s.seqOffsets[k + 1]; e++) {
      out[u].push([s.itemIds[s.seqItems[e] - 1], s.seqTimes[e]]);
    }
  });
  return out;
}

Deno.test("sequences: chronological per user, ties keep input order", () => {
  const s = buildSequences(
    logOf([["u1", "c", 30], ["u2", "a", 5], ["u1", "a", 10], ["u1", "b", 10], ["u1", "d", 10]]),
    opts(),
  );
  assert.deepEqual(asObject(s), {
    u1: [["a", 10], ["b", 10], ["d", 10], ["c", 30]],
    u2: [["a", 5]],
  });
  // Users and items are numbered by first appearance in the input.
  assert.deepEqual(s.userIds, ["u1", "u2"]);
  assert.deepEqual(s.itemIds, ["c", "a", "b", "d"]);
  assert.deepEqual([...s.seqOffsets], [0, 4, 5]);
});

Deno.test("sequences: dedup keeps the earliest, the latest, or all", () => {
  const rows: Row[] = [["u", "x", 20], ["u", "y", 15], ["u", "x", 10], ["u", "x", 10]];
  assert.deepEqual(asObject(buildSequences(logOf(rows), opts({ dedup: "first" }))).u, [
    ["x", 10],
    ["y", 15],
  ]);
  assert.deepEqual(asObject(buildSequences(logOf(rows), opts({ dedup: "last" }))).u, [
    ["y", 15],
    ["x", 20],
  ]);
  const all = buildSequences(logOf(rows), opts({ dedup: "none" }));
  assert.equal(all.seqItems.length, 4);
  assert.equal(buildSequences(logOf(rows), opts()).stats.duplicates, 2);
});

Deno.test("sequences: max-seq-len keeps each user's most recent interactions", () => {
  const rows: Row[] = [["u", "a", 1], ["u", "b", 2], ["u", "c", 3], ["v", "a", 1]];
  const s = buildSequences(logOf(rows), opts({ maxSeqLen: 2 }));
  assert.deepEqual(asObject(s), { u: [["b", 2], ["c", 3]], v: [["a", 1]] });
  assert.equal(s.stats.truncated, 1);
});

/** Straightforward reference: drop under-threshold users/items until nothing changes. */
function naiveCore(rows: Row[], uc: number, ic: number): Set<number> {
  let alive = new Set(rows.map((_, k) => k));
  for (;;) {
    const cu = new Map<string, number>(), ci = new Map<string, number>();
    for (const k of alive) {
      cu.set(rows[k][0], (cu.get(rows[k][0]) ?? 0) + 1);
      ci.set(rows[k][1], (ci.get(rows[k][1]) ?? 0) + 1);
    }
    const next = new Set(
      [...alive].filter((k) => cu.get(rows[k][0])! >= uc && ci.get(rows[k][1])! >= ic),
    );
    if (next.size === alive.size) return alive;
    alive = next;
  }
}

Deno.test("sequences: iterative k-core matches a naive reference on random data", () => {
  const rng = new Rng(11);
  for (let trial = 0; trial < 20; trial++) {
    const rows: Row[] = [];
    const seen = new Set<string>();
    for (let n = 0; n < 600; n++) {
      // Skewed popularity so the core is neither everything nor nothing.
      const u = `u${Math.floor(rng.uniform() ** 2 * 80)}`;
      const i = `i${Math.floor(rng.uniform() ** 2 * 60)}`;
      if (seen.has(u + i)) continue;
      seen.add(u + i);
      rows.push([u, i, rng.int(1000)]);
    }
    const uc = 2 + rng.int(5), ic = 2 + rng.int(5);
    const want = naiveCore(rows, uc, ic);
    const s = buildSequences(logOf(rows), opts({ userCore: uc, itemCore: ic }));
    assert.equal(s.seqItems.length, want.size, `trial ${trial}`);
    assert.equal(s.userIds.length, new Set([...want].map((k) => rows[k][0])).size);
    assert.equal(s.itemIds.length, new Set([...want].map((k) => rows[k][1])).size);
    const counts = new Map<number, number>();
    for (let u = 0; u < s.userIds.length; u++) {
      assert.ok(s.seqOffsets[u + 1] - s.seqOffsets[u] >= uc);
    }
    for (const i of s.seqItems) counts.set(i, (counts.get(i) ?? 0) + 1);
    for (const c of counts.values()) assert.ok(c >= ic);
  }
});

Deno.test("sequences: a core nobody meets leaves nothing", () => {
  const s = buildSequences(
    logOf([["u", "a", 1], ["v", "a", 2]]),
    opts({ userCore: 2, itemCore: 2 }),
  );
  assert.equal(s.userIds.length, 0);
  assert.equal(s.seqItems.length, 0);
});

Deno.test("categories: leaf, first and set labels; unknown is index 0", () => {
  const paths = [["Beauty", "Makeup", "Eyes"], ["Beauty", "Tools"]];
  assert.equal(categoryLabel(paths, "leaf"), "Eyes");
  assert.equal(categoryLabel(paths, "first"), "Beauty");
  assert.equal(categoryLabel(paths, "set"), "Beauty|Eyes|Makeup|Tools");
  assert.equal(categoryLabel([[" ", ""]], "leaf"), "unknown");
  const v = buildCategoryVocab([null, [["A", "B"]], null, [["C", "B"]], [["A", "D"]]], "leaf");
  assert.deepEqual(v.names, ["unknown", "B", "D"]);
  assert.deepEqual([...v.itemCategory], [0, 1, 0, 1, 2]);
});

Deno.test("timestamps: numbers, ISO dates, and clear problems", () => {
  assert.deepEqual(parseTimestamp(1318896000, "s"), { ok: true, seconds: 1318896000 });
  assert.deepEqual(parseTimestamp(" 881250949 ", "s"), { ok: true, seconds: 881250949 });
  assert.deepEqual(parseTimestamp("1318896000123", "ms"), { ok: true, seconds: 1318896000.123 });
  assert.deepEqual(parseTimestamp("2011-10-18", "s"), { ok: true, seconds: 1318896000 });
  assert.deepEqual(parseTimestamp("2011-10-18T00:00:01", "s"), { ok: true, seconds: 1318896001 });
  assert.deepEqual(parseTimestamp("2011-10-18T02:00:00+02:00", "s"), {
    ok: true,
    seconds: 1318896000,
  });
  const bad = (v: unknown, unit: "s" | "ms" = "s") => {
    const r = parseTimestamp(v, unit);
    assert.equal(r.ok, false, String(v));
    return (r as { problem: string }).problem;
  };
  assert.match(bad("yesterday"), /not a number or ISO-8601 date/);
  assert.match(bad(""), /empty/);
  assert.match(bad(undefined), /missing/);
  assert.match(bad(-5), /before 1970/);
  assert.match(bad(1318896000123), /after 2100.*--time-unit ms/);
  assert.match(bad(1e20), /after 2100-01-01$/);
  assert.match(bad(NaN), /not a finite number/);
  assert.match(bad([1]), /not a timestamp/);
  assert.match(bad("2011-13-45"), /not a valid date/);
});
