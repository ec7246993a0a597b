// End to end on the real-data fixtures: `duaf preprocess` -> artifact -> loadDataset / inspect.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { tableFromIPC } from "apache-arrow";
import { loadDataset, userSequence } from "../core/data/dataset.ts";
import { describeDataset } from "../core/data/inspect.ts";
import { ManifestSchema } from "../core/data/manifest.ts";
import { readSafetensors } from "../core/io/safetensors.ts";
import { listDir, runCli } from "./helpers/run_cli.ts";

const FIX = join(import.meta.dirname!, "../fixtures");
const BEAUTY_REVIEWS = join(FIX, "beauty-mini/reviews_Beauty_5.json.gz");
const BEAUTY_META = join(FIX, "beauty-mini/meta_Beauty.json.gz");
const ML_INTER = join(FIX, "ml-100k-mini/ml-100k-mini.inter.gz");
const ML_ITEM = join(FIX, "ml-100k-mini/ml-100k-mini.item");

function beautyArgs(out: string, extra: string[] = []): string[] {
  return [
    "preprocess",
    "--format",
    "amazon2014",
    "--reviews",
    BEAUTY_REVIEWS,
    "--meta",
    BEAUTY_META,
    "--out",
    out,
    "--quiet",
    ...extra,
  ];
}

/** The 5-core computed the plain way, from the raw JSON lines. */
function referenceCore(k: number) {
  const text = new TextDecoder().decode(gunzipSync(Deno.readFileSync(BEAUTY_REVIEWS)));
  let rows = text.trim().split("\n").map((l) =>
    JSON.parse(l) as {
      reviewerID: string;
      asin: string;
      unixReviewTime: number;
    }
  );
  for (;;) {
    const cu = new Map<string, number>(), ci = new Map<string, number>();
    for (const r of rows) {
      cu.set(r.reviewerID, (cu.get(r.reviewerID) ?? 0) + 1);
      ci.set(r.asin, (ci.get(r.asin) ?? 0) + 1);
    }
    const next = rows.filter((r) => cu.get(r.reviewerID)! >= k && ci.get(r.asin)! >= k);
    if (next.length === rows.length) return { rows, users: cu.size, items: ci.size };
    rows = next;
  }
}

Deno.test("preprocess: beauty-mini (2014 Python-dict meta) end to end", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const out = join(tmp, "beauty");
    const r = await runCli(beautyArgs(out));
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout);
    const ref = referenceCore(5);
    assert.equal(summary.users, ref.users);
    assert.equal(summary.items, ref.items);
    assert.equal(summary.interactions, ref.rows.length);
    assert.deepEqual(listDir(tmp), ["beauty"], "no temporary directory left");
    assert.deepEqual(listDir(out), [
      "interactions.arrow",
      "items.arrow",
      "items.safetensors",
      "manifest.json",
      "sequences.safetensors",
      "users.arrow",
    ]);

    const ds = await loadDataset(out);
    assert.ok(ManifestSchema.safeParse(ds.manifest).success);
    assert.equal(ds.numUsers, ref.users);
    assert.equal(ds.manifest.sources.length, 2);
    const raw = await Deno.readFile(BEAUTY_REVIEWS);
    assert.deepEqual(ds.manifest.sources[0], {
      path: BEAUTY_REVIEWS,
      sha256: createHash("sha256").update(raw).digest("hex"),
      bytes: raw.length,
    });
    // Every user's sequence is chronological and has >= 5 items; items are 1..I.
    for (let u = 0; u < ds.numUsers; u++) {
      const { items, times } = userSequence(ds, u);
      assert.ok(items.length >= 5);
      for (let k = 1; k < times.length; k++) assert.ok(times[k - 1] <= times[k]);
      for (const i of items) assert.ok(i >= 1 && i <= ds.numItems);
    }
    // The sequences agree with the raw rows: same (user, item, time) triples.
    const userIds = ds.userIds(), itemIds = ds.itemIds();
    assert.equal(itemIds[0], "");
    const triples = new Set(ref.rows.map((x) => `${x.reviewerID} ${x.asin} ${x.unixReviewTime}`));
    for (let u = 0; u < ds.numUsers; u++) {
      const { items, times } = userSequence(ds, u);
      items.forEach((i, k) => assert.ok(triples.has(`${userIds[u]} ${itemIds[i]} ${times[k]}`)));
    }
    // Text: every row with mask 1 is unit length; padding row is zero.
    const text = ds.text!;
    assert.equal(text.dim, 64);
    assert.equal(text.mask[0], 0);
    for (let i = 0; i <= ds.numItems; i++) {
      const n = Math.hypot(...text.data.subarray(i * 64, (i + 1) * 64));
      assert.ok(text.mask[i] ? Math.abs(n - 1) < 1e-5 : n === 0);
    }
    assert.equal(ds.image, null);
    // Category 0 is "unknown" and every item's category index is in range.
    assert.equal(ds.manifest.categories.names[0], "unknown");
    for (let i = 1; i <= ds.numItems; i++) {
      assert.ok(ds.itemCategory[i] >= 0 && ds.itemCategory[i] < ds.numCategories);
    }
    // The Arrow tables open without duaf's loader and match the arrays.
    const items = tableFromIPC(await Deno.readFile(join(out, "items.arrow")));
    assert.equal(items.numRows, ds.numItems);
    assert.deepEqual(items.schema.fields.map((f) => f.name), [
      "item_index",
      "item_id",
      "title",
      "category",
    ]);
    const inter = tableFromIPC(await Deno.readFile(join(out, "interactions.arrow")));
    assert.equal(inter.numRows, ds.seqItems.length);
    assert.deepEqual([...inter.getChild("item_index")!.toArray()], [...ds.seqItems]);
    const titles = items.getChild("title")!.toArray() as (string | null)[];
    assert.ok(titles.filter((t) => t !== null).length > 0.95 * ds.numItems);

    const stats = describeDataset(ds);
    assert.equal(stats.histogram.reduce((s, b) => s + b.users, 0), ds.numUsers);
    assert.equal(stats.sequenceLength.min, 5);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("preprocess: same inputs and options give byte-identical artifacts", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const a = join(tmp, "a"), b = join(tmp, "b");
    const extra = ["--kcore", "3", "--text-dim", "16", "--name", "beauty"];
    assert.equal((await runCli(beautyArgs(a, extra))).code, 0);
    assert.equal((await runCli(beautyArgs(b, extra))).code, 0);
    for (const f of listDir(a)) {
      assert.deepEqual(await Deno.readFile(join(a, f)), await Deno.readFile(join(b, f)), f);
    }
    // A different seed changes the SVD basis, nothing else.
    const c = join(tmp, "c");
    assert.equal((await runCli(beautyArgs(c, [...extra, "--seed", "1"]))).code, 0);
    assert.deepEqual(
      await Deno.readFile(join(a, "sequences.safetensors")),
      await Deno.readFile(join(c, "sequences.safetensors")),
    );
    assert.notDeepEqual(
      await Deno.readFile(join(a, "items.safetensors")),
      await Deno.readFile(join(c, "items.safetensors")),
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("preprocess: ml-100k-mini (RecBole atomic files), no k-core", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const out = join(tmp, "ml");
    const r = await runCli([
      "preprocess",
      "--format",
      "recbole",
      "--inter",
      ML_INTER,
      "--item",
      ML_ITEM,
      "--kcore",
      "0",
      "--category",
      "set",
      "--out",
      out,
      "--quiet",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const lines = new TextDecoder().decode(gunzipSync(Deno.readFileSync(ML_INTER))).trim()
      .split("\n").slice(1).map((l) => l.split("\t"));
    const ds = await loadDataset(out);
    assert.equal(ds.numUsers, new Set(lines.map((l) => l[0])).size);
    assert.equal(ds.numItems, new Set(lines.map((l) => l[1])).size);
    assert.equal(ds.seqItems.length, lines.length);
    // Item side information: title column, genre set as category.
    const itemRows = Deno.readTextFileSync(ML_ITEM).trim().split("\n").slice(1)
      .map((l) => l.split("\t"));
    const byId = new Map(itemRows.map((c) => [c[0], c]));
    const table = tableFromIPC(await Deno.readFile(join(out, "items.arrow")));
    const ids = table.getChild("item_id")!.toArray() as string[];
    const titles = table.getChild("title")!.toArray() as string[];
    const cats = table.getChild("category")!.toArray() as string[];
    for (let k = 0; k < ids.length; k += 97) {
      const src = byId.get(ids[k])!;
      assert.equal(titles[k], src[1]);
      assert.equal(cats[k], src[3].split(" ").sort().join("|"));
    }
    const r2 = await runCli(["inspect", out]);
    assert.equal(r2.code, 0);
    assert.match(r2.stdout, new RegExp(`users\\s+${ds.numUsers}\\n`));
    assert.match(r2.stdout, /time range\s+1997-/);
    assert.match(r2.stdout, /text\s+dim 64, \d+\/\d+ items/);
    const json = JSON.parse((await runCli(["inspect", out, "--json"])).stdout);
    assert.equal(json.interactions, lines.length);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("preprocess: max-seq-len and dedup land in the manifest and the arrays", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const out = join(tmp, "ml");
    const r = await runCli([
      "preprocess",
      "--format=recbole",
      `--inter=${ML_INTER}`,
      "--kcore=0",
      "--max-seq-len=20",
      "--dedup=none",
      `--out=${out}`,
      "--quiet",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const ds = await loadDataset(out);
    for (let u = 0; u < ds.numUsers; u++) assert.ok(userSequence(ds, u).items.length <= 20);
    assert.equal(ds.manifest.options.maxSeqLen, 20);
    assert.equal(ds.manifest.options.dedup, "none");
    assert.ok(ds.manifest.filtering.truncated > 0);
    // Without an item file there is no text to describe items: no text modality.
    assert.equal(ds.text, null);
    const st = await readSafetensors(join(out, "items.safetensors"));
    assert.deepEqual([...st.tensors.keys()], ["item_category"]);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("loadDataset: clear errors for what is not a dataset", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    await assert.rejects(loadDataset(tmp), /is not a duaf dataset \(no manifest\.json/);
    await Deno.writeTextFile(join(tmp, "manifest.json"), '{"format": "other"}');
    await assert.rejects(loadDataset(tmp), /is not a duaf dataset/);
    await Deno.writeTextFile(
      join(tmp, "manifest.json"),
      '{"format": "duaf-dataset", "version": 99}',
    );
    await assert.rejects(loadDataset(tmp), /version 99 is not supported/);
    const r = await runCli(["inspect", join(tmp, "nope")]);
    assert.equal(r.code, 2);
    assert.equal(r.stderr.split("\n").length, 1);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
