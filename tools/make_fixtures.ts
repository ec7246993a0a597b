/**
 * Rebuilds fixtures/beauty-mini and fixtures/ml-100k-mini from the real data in ../shared/data,
 * in the raw formats users download (the Beauty meta as Python dict literals, as in the real
 * 2014 dump), with the side information of every item kept.
 *   beauty-mini: the 1,500 most reviewed items; 2,000 users drawn (seeded) from those with at
 *     least 5 reviews of them, with those reviews. Dense enough that the default 5-core keeps
 *     most of it, as on the full data.
 *   ml-100k-mini: 150 users drawn (seeded) with all their ratings.
 *
 *   deno run -A tools/make_fixtures.ts [SHARED_DATA_DIR]
 */
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { Rng } from "../core/random.ts";
import { TextSource } from "../core/data/source.ts";
import { pyRepr } from "../core/data/pyrepr.ts";

const shared = Deno.args[0] ?? join(import.meta.dirname!, "../../shared/data");
const root = join(import.meta.dirname!, "../fixtures");

async function lines(path: string): Promise<string[]> {
  const out: string[] = [];
  for await (const [text] of new TextSource(path).lines()) if (text !== "") out.push(text);
  return out;
}

function sampleUsers(users: string[], n: number, seed: number): Set<string> {
  const distinct = [...new Set(users)];
  return new Set(new Rng(seed).shuffle(distinct).slice(0, n));
}

async function write(path: string, text: string, gzip: boolean): Promise<void> {
  const bytes = new TextEncoder().encode(text);
  // mtime 0 in the gzip header keeps the fixture byte-identical across rebuilds.
  await Deno.writeFile(path, gzip ? gzipSync(bytes, { level: 9 }) : bytes);
  console.log(`${path}: ${(await Deno.stat(path)).size} bytes`);
}

async function beauty(): Promise<void> {
  const dir = join(root, "beauty-mini");
  await Deno.mkdir(dir, { recursive: true });
  const reviews = await lines(join(shared, "amazon-beauty-2014/reviews_Beauty_5.json.gz"));
  const parsed = reviews.map((l) => JSON.parse(l) as { reviewerID: string; asin: string });
  const popularity = new Map<string, number>();
  for (const r of parsed) popularity.set(r.asin, (popularity.get(r.asin) ?? 0) + 1);
  const items = new Set(
    [...popularity].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, 1500)
      .map(([asin]) => asin),
  );
  const perUser = new Map<string, number>();
  for (const r of parsed) {
    if (items.has(r.asin)) perUser.set(r.reviewerID, (perUser.get(r.reviewerID) ?? 0) + 1);
  }
  const eligible = parsed.map((r) => r.reviewerID).filter((u) => perUser.get(u)! >= 5);
  const keep = sampleUsers(eligible, 2000, 2014);
  const kept = reviews.filter((_, k) =>
    keep.has(parsed[k].reviewerID) && items.has(parsed[k].asin)
  );
  await write(join(dir, "reviews_Beauty_5.json.gz"), kept.join("\n") + "\n", true);
  const meta = (await lines(join(shared, "amazon-beauty-2014/meta_Beauty.json.gz")))
    .map((l) => JSON.parse(l))
    .filter((m) => items.has(m.asin));
  await write(join(dir, "meta_Beauty.json.gz"), meta.map(pyRepr).join("\n") + "\n", true);
}

async function ml100k(): Promise<void> {
  const dir = join(root, "ml-100k-mini");
  await Deno.mkdir(dir, { recursive: true });
  const [header, ...rows] = await lines(join(shared, "ml-100k/ml-100k.inter.gz"));
  const keep = sampleUsers(rows.map((r) => r.split("\t")[0]), 150, 100);
  const kept = rows.filter((r) => keep.has(r.split("\t")[0]));
  const items = new Set(kept.map((r) => r.split("\t")[1]));
  await write(join(dir, "ml-100k-mini.inter.gz"), [header, ...kept].join("\n") + "\n", true);
  const [itemHeader, ...itemRows] = await lines(join(shared, "ml-100k/ml-100k.item"));
  const keptItems = itemRows.filter((r) => items.has(r.split("\t")[0]));
  await write(join(dir, "ml-100k-mini.item"), [itemHeader, ...keptItems].join("\n") + "\n", false);
}

await beauty();
await ml100k();
