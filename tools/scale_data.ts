/**
 * Input files for `deno task bench scale` at real catalog sizes, in the amazon2014 format that
 * `duaf preprocess --format amazon2014` reads:
 *
 * - replicated: the Amazon Beauty 2014 reviews and meta written K times, every reviewerID and asin
 *   of copy k suffixed `-k` (k = 0..K-1), so users, items and interactions all scale by K and each
 *   copy preprocesses to the same sequences as the original. Copy-major order (copy 0's lines,
 *   then copy 1's, ...): the source is read once per copy and the output is gzipped as it is
 *   written, so memory does not grow with K;
 * - zipf: a synthetic catalog whose item popularity follows a Zipf law, p(rank r) ∝ r^-s, with
 *   every item drawn at least once so the whole catalog survives `--kcore 0`. Users have at least
 *   five interactions at increasing times; everything comes from one seeded generator.
 *
 * Run as a script, it builds Beauty ×K for other tools (tools/device_sweep.sh) and prints the
 * input's JSON ({name, dir, reviews, meta, preprocessArgs}) on stdout:
 *
 *   deno run -A tools/scale_data.ts --copies 10 --source DIR --cache DIR
 */
import { exists } from "../core/io/atomic.ts";
import { basename, join } from "node:path";
import { parseArgs } from "node:util";
import { parseJsonOrPyLiteral } from "../core/data/pyliteral.ts";
import { TextSource } from "../core/data/source.ts";
import { Rng } from "../core/random.ts";

/** Lines of `open()`'s text K times, with `suffix(line, k)` applied to copy k. */
export async function* replicateLines(
  open: () => AsyncIterable<string>,
  copies: number,
  suffix: (line: string, k: number) => string | null,
): AsyncGenerator<string> {
  for (let k = 0; k < copies; k++) {
    for await (const line of open()) {
      if (line.trim() === "") continue;
      const out = suffix(line, k);
      if (out !== null) yield out;
    }
  }
}

type Obj = Record<string, unknown>;

function parseObject(line: string): Obj {
  const v = parseJsonOrPyLiteral(line);
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new Error(`not an object: ${line.slice(0, 80)}`);
  }
  return v as Obj;
}

/** A review line of copy k: reviewerID and asin suffixed, other fields as they are. */
export function suffixReview(line: string, k: number): string {
  const o = parseObject(line);
  o.reviewerID = `${o.reviewerID}-${k}`;
  o.asin = `${o.asin}-${k}`;
  return JSON.stringify(o);
}

/** A meta line of copy k (JSON or the 2014 dump's Python dict literal), written as JSON. */
export function suffixMeta(line: string, k: number): string {
  const o = parseObject(line);
  o.asin = `${o.asin}-${k}`;
  return JSON.stringify(o);
}

async function* fileLines(path: string): AsyncGenerator<string> {
  for await (const [text] of new TextSource(path).lines()) yield text;
}

/**
 * Writes the lines gzipped to `path` (through a temporary name, renamed at the end, so a file
 * at `path` is always complete); returns the number of lines.
 */
export async function writeGzLines(path: string, lines: AsyncIterable<string>): Promise<number> {
  const tmp = `${path}.tmp`;
  const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
  const gz = new CompressionStream("gzip");
  const piped = gz.readable.pipeTo(file.writable);
  const writer = gz.writable.getWriter();
  const enc = new TextEncoder();
  let n = 0;
  let buf: string[] = [];
  for await (const line of lines) {
    buf.push(line);
    n++;
    if (buf.length === 8192) {
      await writer.write(enc.encode(buf.join("\n") + "\n"));
      buf = [];
    }
  }
  if (buf.length > 0) await writer.write(enc.encode(buf.join("\n") + "\n"));
  await writer.close();
  await piped;
  await Deno.rename(tmp, path);
  return n;
}

export interface ScaleInput {
  /** Case name, e.g. "beauty-x10" or "zipf-1000000". */
  name: string;
  /** Its folder under the cache (input files, and the datasets the benchmark writes). */
  dir: string;
  reviews: string;
  meta?: string;
  /** Extra `duaf preprocess` flags (the Zipf catalog keeps every item: --kcore 0). */
  preprocessArgs: string[];
}

/** Beauty replicated ×K under `cache/beauty-xK/` (built once, reused when present). */
export async function replicatedBeauty(
  source: string,
  copies: number,
  cache: string,
): Promise<ScaleInput> {
  const name = `beauty-x${copies}`;
  // Keyed by the source folder too, so a run on another copy of the data never reuses these.
  const dir = join(cache, `${basename(source)}-x${copies}`);
  await Deno.mkdir(dir, { recursive: true });
  const reviews = join(dir, "reviews_Beauty_5.json.gz");
  const meta = join(dir, "meta_Beauty.json.gz");
  if (!await exists(reviews)) {
    const src = join(source, "reviews_Beauty_5.json.gz");
    await writeGzLines(reviews, replicateLines(() => fileLines(src), copies, suffixReview));
  }
  if (!await exists(meta)) {
    const src = join(source, "meta_Beauty.json.gz");
    await writeGzLines(meta, replicateLines(() => fileLines(src), copies, suffixMeta));
  }
  return { name, dir, reviews, meta, preprocessArgs: [] };
}

export interface ZipfOptions {
  items: number;
  interactions: number;
  /** Zipf exponent s: p(rank r) ∝ r^-s. */
  exponent: number;
  /** Mean interactions per user (at least 5 each). */
  meanLength: number;
  seed: number;
}

export const ZIPF_DEFAULTS: ZipfOptions = {
  items: 1_000_000,
  interactions: 5_000_000,
  exponent: 1.0,
  meanLength: 10,
  seed: 0,
};

const MIN_LENGTH = 5;
const T0 = 1_300_000_000; // 2011-03-13, unix seconds
const DAY = 86_400;

/**
 * Review lines of the synthetic catalog, user by user. The item stream holds every item once and
 * `interactions - items` Zipf draws, shuffled; users take consecutive runs of it, each at least
 * MIN_LENGTH long (geometric beyond that, mean `meanLength`), one interaction every 1..30 days.
 * A repeat of an item within a user is redrawn from the Zipf law, so dedup removes nothing.
 */
export function* zipfReviewLines(opts: ZipfOptions): Generator<string> {
  const { items, interactions, exponent, meanLength, seed } = opts;
  if (interactions < items) throw new Error("zipf: interactions must be >= items");
  if (meanLength < MIN_LENGTH) throw new Error(`zipf: mean length must be >= ${MIN_LENGTH}`);
  const rng = new Rng(seed);
  const cdf = new Float64Array(items);
  let total = 0;
  for (let r = 0; r < items; r++) cdf[r] = total += Math.pow(r + 1, -exponent);
  const draw = () => {
    const u = rng.uniform() * total;
    let lo = 0;
    let hi = items - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] > u) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  };
  const stream = new Int32Array(interactions);
  for (let i = 0; i < items; i++) stream[i] = i;
  for (let i = items; i < interactions; i++) stream[i] = draw();
  rng.shuffle(stream);
  // Geometric extra length with mean meanLength - MIN_LENGTH.
  const q = 1 / (1 + meanLength - MIN_LENGTH);
  const seen = new Set<number>();
  let u = 0;
  for (let pos = 0; pos < interactions; u++) {
    let len = MIN_LENGTH;
    while (rng.uniform() >= q) len++;
    // A short remainder joins the last user rather than forming one under MIN_LENGTH.
    if (interactions - pos - len < MIN_LENGTH) len = interactions - pos;
    seen.clear();
    let t = T0 + rng.int(3 * 365) * DAY;
    for (let j = 0; j < len; j++, pos++) {
      let item = stream[pos];
      while (seen.has(item)) item = draw();
      seen.add(item);
      t += (1 + rng.int(30)) * DAY;
      yield `{"reviewerID": "U${u}", "asin": "Z${item}", "unixReviewTime": ${t}}`;
    }
  }
}

/** The Zipf catalog under `cache/zipf-ITEMS-.../` (built once, reused when present). */
export async function zipfCatalog(opts: ZipfOptions, cache: string): Promise<ScaleInput> {
  const name = `zipf-${opts.items}`;
  const dir = join(
    cache,
    `${name}-i${opts.interactions}-s${opts.exponent}-l${opts.meanLength}-seed${opts.seed}`,
  );
  await Deno.mkdir(dir, { recursive: true });
  const reviews = join(dir, "reviews.json.gz");
  if (!await exists(reviews)) {
    const lines = zipfReviewLines(opts);
    await writeGzLines(
      reviews,
      (async function* () {
        yield* lines;
      })(),
    );
  }
  return { name, dir, reviews, preprocessArgs: ["--kcore=0"] };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      copies: { type: "string" },
      source: { type: "string" },
      cache: { type: "string", default: "runs/scale-data" },
    },
  });
  const copies = Number(values.copies);
  if (!Number.isInteger(copies) || copies < 1 || !values.source) {
    console.error("usage: scale_data.ts --copies K --source BEAUTY_DIR [--cache DIR]");
    Deno.exit(2);
  }
  console.log(JSON.stringify(await replicatedBeauty(values.source, copies, values.cache!)));
}
