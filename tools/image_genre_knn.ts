/**
 * A cheap quality proxy for image features: do an item's nearest neighbours by image (cosine
 * of the dataset's image modality) share a genre with it? For every item with an image, the
 * fraction of its k nearest image neighbours that share at least one genre (RecBole `class`
 * column of ml-100k.item), averaged; beside it the same fraction over all other items (what
 * random neighbours would score).
 *
 *   deno run -A tools/image_genre_knn.ts DATASET_DIR ML100K_ITEM_FILE [--k 10] [--same-as DIR]
 *
 * --same-as DIR keeps only the items that also have an image in dataset DIR (to compare two
 * encoders on the same items).
 */
import { parseArgs } from "node:util";
import { loadDataset } from "../core/data/dataset.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  options: { k: { type: "string", default: "10" }, "same-as": { type: "string" } },
  allowPositionals: true,
});
const [dir, itemFile] = positionals;
const k = Number(values.k);
const ds = await loadDataset(dir);
if (!ds.image) throw new Error(`${dir} has no image modality`);
const { dim, data, mask } = ds.image;
const ids = ds.itemIds();

const lines = (await Deno.readTextFile(itemFile)).split("\n").filter((l) => l !== "");
const col = lines[0].split("\t").findIndex((h) => h.startsWith("class"));
const genresById = new Map(
  lines.slice(1).map((l) => {
    const f = l.split("\t");
    return [f[0], new Set(f[col].split(" ").filter((g) => g !== ""))];
  }),
);

let keep = (_id: string) => true;
if (values["same-as"]) {
  const other = await loadDataset(values["same-as"]);
  const otherIds = other.itemIds();
  const withImage = new Set(otherIds.filter((_, i) => i > 0 && other.image?.mask[i] === 1));
  keep = (id) => withImage.has(id);
}
const items = [...mask.keys()].filter((i) => i > 0 && mask[i] === 1 && keep(ids[i]));
const genres = items.map((i) => genresById.get(ids[i]) ?? new Set<string>());
const shares = (a: number, b: number) => [...genres[a]].some((g) => genres[b].has(g));
// Unit rows.
const unit = new Float32Array(items.length * dim);
items.forEach((item, r) => {
  let s = 0;
  for (let c = 0; c < dim; c++) s += data[item * dim + c] ** 2;
  const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
  for (let c = 0; c < dim; c++) unit[r * dim + c] = data[item * dim + c] * inv;
});
let knn = 0;
let base = 0;
const sims = new Float64Array(items.length);
for (let a = 0; a < items.length; a++) {
  for (let b = 0; b < items.length; b++) {
    let s = 0;
    for (let c = 0; c < dim; c++) s += unit[a * dim + c] * unit[b * dim + c];
    sims[b] = b === a ? -Infinity : s;
  }
  const order = [...sims.keys()].sort((x, y) => sims[y] - sims[x] || x - y).slice(0, k);
  knn += order.filter((b) => shares(a, b)).length / k;
  let same = 0;
  for (let b = 0; b < items.length; b++) if (b !== a && shares(a, b)) same++;
  base += same / (items.length - 1);
}
console.log(JSON.stringify({
  dataset: dir,
  source: ds.image.source,
  items: items.length,
  dim,
  k,
  genreSharedAtK: Number((knn / items.length).toFixed(4)),
  randomNeighbours: Number((base / items.length).toFixed(4)),
}));
