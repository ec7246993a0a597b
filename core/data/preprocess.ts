/**
 * The preprocessing pipeline behind `duaf preprocess`: read interactions, filter them into
 * chronological sequences, attach item side information (categories, text and image features),
 * and write a dataset artifact. Interactions are read in full first so that item files are read
 * only for the items that survive filtering: memory follows the output, not the input.
 */
import { basename, resolve } from "node:path";
import { z } from "zod";
import { DataError, UsageError } from "../errors.ts";
import { gloveFeatures, isGloveSpec } from "../features/glove.ts";
import { encodeImages, itemImagePaths } from "../features/onnx_image.ts";
import { encodeTexts } from "../features/onnx_text.ts";
import { readFeatureFile, readLayerFeatureFile } from "../features/precomputed.ts";
import { type Progress, silentProgress } from "../progress.ts";
import { VERSION } from "../version.ts";
import { checkOutputDir, type GuardOptions } from "../io/output_guard.ts";
import { DATASET_ARTIFACT, type ModalityArrays, writeArtifact } from "./artifact.ts";
import { buildCategoryVocab } from "./categories.ts";
import {
  buildSequences,
  InteractionLog,
  type InteractionSink,
  type Sequences,
} from "./interactions.ts";
import { Issues, type SkipCount } from "./issues.ts";
import { type ItemMeta, joinText } from "./item_meta.ts";
import { DATASET_FORMAT, DATASET_VERSION, type Manifest, type ModalityInfo } from "./manifest.ts";
import { readAmazonMeta, readAmazonReviews } from "./readers/amazon.ts";
import type { ItemTable, ReadContext } from "./readers/context.ts";
import { addInteraction, textValue } from "./readers/context.ts";
import { readRecboleInter, readRecboleItems } from "./readers/recbole.ts";
import { categoryPaths, openTable, type TableColumns, type TableFormat } from "./readers/table.ts";
import { hashFile, type SourceInfo } from "./source.ts";
import { tfidfSvdFeatures } from "./tfidf.ts";

export const INPUT_FORMATS = [
  "amazon2014",
  "amazon2018",
  "recbole",
  "csv",
  "tsv",
  "jsonl",
  "parquet",
] as const;
export type InputFormat = (typeof INPUT_FORMATS)[number];

export const ENGINES = ["builtin", "duckdb"] as const;
export type Engine = (typeof ENGINES)[number];

const count = z.number().int().min(0);

export const PreprocessOptionsSchema = z.object({
  format: z.enum(INPUT_FORMATS),
  /** Interactions: Amazon reviews, RecBole .inter, or the generic table. */
  interactions: z.string().min(1),
  /** Item side information: Amazon meta, RecBole .item, or a generic item table. */
  items: z.string().min(1).optional(),
  /** Output directory (not recorded in the manifest). */
  out: z.string().min(1),
  /** Dataset name; default: the output directory's base name. */
  name: z.string().min(1).optional(),
  /** Column names (RecBole and generic tables). */
  userCol: z.string().min(1).optional(),
  itemCol: z.string().min(1).optional(),
  timeCol: z.string().min(1).optional(),
  textCols: z.array(z.string().min(1)).optional(),
  categoryCol: z.string().min(1).optional(),
  titleCol: z.string().min(1).optional(),
  imageCol: z.string().min(1).optional(),
  timeUnit: z.enum(["s", "ms"]).default("s"),
  dedup: z.enum(["first", "last", "none"]).default("first"),
  userCore: count.default(5),
  itemCore: count.default(5),
  /** Keep each user's last N interactions; 0 = all. */
  maxSeqLen: count.default(0),
  category: z.enum(["leaf", "first", "set"]).default("leaf"),
  /** Dimension of the built-in TF-IDF + SVD text features. */
  textDim: z.number().int().min(1).max(4096).default(64),
  /** Precomputed text features file, or `glove` / `glove:FILE` (SIF over GloVe word vectors). */
  textFeatures: z.string().min(1).optional(),
  imageFeatures: z.string().min(1).optional(),
  /** BERT-style ONNX text encoder and its vocab.txt (used when textFeatures is not given). */
  textEncoder: z.string().min(1).optional(),
  vocab: z.string().min(1).optional(),
  textPooling: z.enum(["cls", "mean"]).default("cls"),
  textMaxLength: z.number().int().min(2).max(8192).default(128),
  /** false for cased vocabularies. */
  textLowercase: z.boolean().default(true),
  /** ONNX image encoder over the images in imageDir (used when imageFeatures is not given). */
  imageEncoder: z.string().min(1).optional(),
  /** Folder of item images: ITEM_ID.jpg/.jpeg/.png, or the paths in imageCol relative to it. */
  imageDir: z.string().min(1).optional(),
  encoderBatchSize: z.number().int().min(1).default(32),
  /** Layer-wise frozen states (IISAN): precomputed [items, K, d] files (docs/features.md). */
  textLayerFeatures: z.string().min(1).optional(),
  imageLayerFeatures: z.string().min(1).optional(),
  /** With imageEncoder: also store K evenly spaced intermediate block outputs per item. */
  imageLayers: z.number().int().min(1).max(64).optional(),
  strict: z.boolean().default(true),
  seed: z.number().int().default(0),
  /** Who reads the interactions and builds the sequences (not recorded: same bytes either way). */
  engine: z.enum(ENGINES).default("builtin"),
});

export type PreprocessOptions = z.input<typeof PreprocessOptionsSchema>;
export type ResolvedOptions = z.output<typeof PreprocessOptionsSchema>;

export interface PreprocessSummary {
  out: string;
  name: string;
  users: number;
  items: number;
  interactions: number;
  categories: number;
  coverage: { text?: number; image?: number };
  filtering: Manifest["filtering"];
  skipped: number;
  seconds: number;
}

/** Parses options, turning zod's complaint into a one-line UsageError. */
export function resolveOptions(options: PreprocessOptions): ResolvedOptions {
  const r = PreprocessOptionsSchema.safeParse(options);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new UsageError(`option ${issue.path.join(".") || "(root)"}: ${issue.message}`);
  }
  const o = r.data;
  const generic = o.format === "csv" || o.format === "tsv" || o.format === "jsonl" ||
    o.format === "parquet";
  if (generic && (!o.userCol || !o.itemCol || !o.timeCol)) {
    throw new UsageError(`--format ${o.format} needs --user-col, --item-col and --time-col`);
  }
  if (o.format.startsWith("amazon")) {
    const extra = [
      ["userCol", "--user-col"],
      ["itemCol", "--item-col"],
      ["timeCol", "--time-col"],
      ["textCols", "--text-cols"],
      ["categoryCol", "--category-col"],
      ["titleCol", "--title-col"],
      ["imageCol", "--image-col"],
    ].find(([k]) => o[k as keyof ResolvedOptions] !== undefined);
    if (extra) throw new UsageError(`${extra[1]} does not apply to --format ${o.format}`);
  }
  if (o.textFeatures && o.textEncoder) {
    throw new UsageError("give --text-features or --text-encoder, not both");
  }
  if (o.imageFeatures && o.imageEncoder) {
    throw new UsageError("give --image-features or --image-encoder, not both");
  }
  if (o.textEncoder && !o.vocab) throw new UsageError("--text-encoder needs --vocab vocab.txt");
  if (o.vocab && !o.textEncoder) throw new UsageError("--vocab applies only with --text-encoder");
  if (o.imageEncoder && !o.imageDir) {
    throw new UsageError("--image-encoder needs --image-dir DIR (the item images)");
  }
  if (o.imageLayers !== undefined && !o.imageEncoder) {
    throw new UsageError("--image-layers needs --image-encoder (its block outputs are the layers)");
  }
  if (o.imageLayers !== undefined && o.imageLayerFeatures) {
    throw new UsageError("give --image-layers or --image-layer-features, not both");
  }
  return o;
}

export async function preprocess(
  options: PreprocessOptions,
  progress: Progress = silentProgress,
  output: GuardOptions = {},
): Promise<PreprocessSummary> {
  const started = performance.now();
  const o = resolveOptions(options);
  // Fail before the work if --out holds something duaf must not replace.
  await checkOutputDir(o.out, DATASET_ARTIFACT, output);
  const issues = new Issues(o.strict);
  const ctx: ReadContext = { issues, progress, timeUnit: o.timeUnit };
  const sources: SourceInfo[] = [];

  const read = o.engine === "duckdb"
    ? await (await import("./engines/duckdb.ts")).duckdbSequences(
      o,
      ctx,
      (sink) => readInteractions(o, sink, ctx),
    )
    : await builtinSequences(o, ctx);
  sources.push(read.source);
  const seqs = read.seqs;
  if (seqs.stats.input === 0) {
    const why = issues.total > 0 ? ` (${issues.total} bad rows skipped)` : "";
    throw new DataError(o.interactions, null, null, `no interactions${why}`);
  }
  if (seqs.userIds.length === 0) {
    throw new DataError(
      o.interactions,
      null,
      null,
      `no interactions left after the ${o.userCore}-core (users) / ${o.itemCore}-core (items) ` +
        `filter (input: ${read.rawUsers} users, ${read.rawItemIds.length} items, ` +
        `${seqs.stats.input} interactions); lower --kcore or --user-core/--item-core`,
    );
  }
  progress.log(
    `${seqs.userIds.length} users, ${seqs.itemIds.length} items, ${seqs.seqItems.length} ` +
      `interactions (${seqs.stats.duplicates} duplicates, ${seqs.stats.kcoreRemoved} removed by ` +
      `k-core in ${seqs.stats.kcoreRounds} rounds)`,
  );
  const numItems = seqs.itemIds.length;
  const itemIndex = new Map(seqs.itemIds.map((id, k) => [id, k + 1]));

  const meta = await readItems(o, itemIndex, numItems, ctx, sources);
  const vocab = buildCategoryVocab(meta.map((m) => m?.categories ?? null), o.category);

  // Items that filtering dropped map to 0, telling the feature reader the id is known but has
  // no row (it reports them like unknown ids for now; see docs/dataset-format.md).
  const featureIndex = new Map(read.rawItemIds.map((id) => [id, 0]));
  for (const [id, i] of itemIndex) featureIndex.set(id, i);

  const texts = meta.map((m) => m?.text ?? null);
  let text: Feature | null;
  if (o.textFeatures && isGloveSpec(o.textFeatures)) {
    const f = await gloveFeatures(texts, o.textFeatures, progress);
    sources.push(f.sourceInfo);
    text = { dim: f.dim, data: f.data, mask: f.mask, source: f.source };
  } else if (o.textFeatures) {
    text = await readFeatures(o.textFeatures, "text", featureIndex, numItems, ctx, sources);
  } else if (o.textEncoder) {
    sources.push(await hashFile(o.textEncoder), await hashFile(o.vocab!));
    const f = await encodeTexts(o.textEncoder, o.vocab!, texts, {
      pooling: o.textPooling,
      maxLength: o.textMaxLength,
      batchSize: o.encoderBatchSize,
      lowercase: o.textLowercase,
      progress,
    });
    text = { ...f, source: `onnx:${o.textEncoder}` };
  } else {
    const f = tfidfSvdFeatures(texts, { dim: o.textDim, seed: o.seed }, progress);
    text = { ...f, source: "tfidf-svd" };
  }
  if (!text.mask.some((x) => x === 1)) {
    progress.log("no item has text features: the dataset has no text modality");
    text = null;
  }

  let image: Feature | null = null;
  let textLayers: Layers | null = null;
  let imageLayers: Layers | null = null;
  if (o.imageFeatures) {
    image = await readFeatures(o.imageFeatures, "image", featureIndex, numItems, ctx, sources);
  } else if (o.imageEncoder) {
    sources.push(await hashFile(o.imageEncoder));
    const paths = await imagePaths(o, meta, seqs.itemIds);
    const f = await encodeImages(o.imageEncoder, paths, {
      batchSize: o.encoderBatchSize,
      strict: o.strict,
      progress,
      layers: o.imageLayers,
    });
    issues.addSkipped(o.imageDir!, "image", "unreadable images", f.skipped);
    image = { dim: f.dim, data: f.data, mask: f.mask, source: `onnx:${o.imageEncoder}` };
    if (f.layers) {
      imageLayers = { ...f.layers, source: `onnx:${o.imageEncoder}` };
    }
  }
  if (o.textLayerFeatures) {
    textLayers = await readLayers(
      o.textLayerFeatures,
      "text",
      featureIndex,
      numItems,
      ctx,
      sources,
    );
  }
  if (o.imageLayerFeatures) {
    imageLayers = await readLayers(
      o.imageLayerFeatures,
      "image",
      featureIndex,
      numItems,
      ctx,
      sources,
    );
  }
  const layers: NonNullable<Manifest["layers"]> = {};
  if (textLayers) layers.text = { widths: textLayers.widths, source: textLayers.source };
  if (imageLayers) layers.image = { widths: imageLayers.widths, source: imageLayers.source };

  const modalities: Manifest["modalities"] = {};
  if (text) modalities.text = modalityInfo(text, numItems);
  if (image) modalities.image = modalityInfo(image, numItems);

  const filtering = {
    inputInteractions: seqs.stats.input,
    duplicates: seqs.stats.duplicates,
    kcoreRemoved: seqs.stats.kcoreRemoved,
    truncated: seqs.stats.truncated,
    skipped: issues.summary(),
  };
  const name = o.name ?? basename(o.out.replace(/[\\/]+$/, ""));
  // Neither the output path nor the engine shapes the data: both engines write the same bytes.
  const { out: _out, engine: _engine, ...recorded } = o;
  const manifest: Manifest = {
    format: DATASET_FORMAT,
    version: DATASET_VERSION,
    duaf: VERSION,
    name,
    sources: dedupSources(sources),
    options: recorded,
    counts: {
      users: seqs.userIds.length,
      items: numItems,
      interactions: seqs.seqItems.length,
      categories: vocab.names.length,
    },
    timestamps: { ...timeRange(seqs), unit: "s" },
    modalities,
    // Only with layer states: a dataset without them keeps the bytes it always had.
    ...(Object.keys(layers).length > 0 ? { layers } : {}),
    categories: { mode: o.category, names: vocab.names },
    splits: { scheme: "leave-one-out", valid: "second-last", test: "last" },
    filtering,
  };
  const task = progress.start(`writing ${o.out}`, null);
  await writeArtifact(o.out, output, {
    manifest,
    userIds: seqs.userIds,
    itemIds: seqs.itemIds,
    titles: meta.slice(1).map((m) => m?.title ?? null),
    seqOffsets: seqs.seqOffsets,
    seqItems: seqs.seqItems,
    seqTimes: seqs.seqTimes,
    itemCategory: vocab.itemCategory,
    categoryNames: vocab.names,
    text,
    image,
    textLayers,
    imageLayers,
  });
  task.done();
  if (issues.total > 0) logSkips(progress, issues.summary());
  return {
    out: o.out,
    name,
    users: manifest.counts.users,
    items: manifest.counts.items,
    interactions: manifest.counts.interactions,
    categories: manifest.counts.categories,
    coverage: Object.fromEntries(
      Object.entries(modalities).map(([k, v]) => [k, v.coverage]),
    ) as PreprocessSummary["coverage"],
    filtering,
    skipped: issues.total,
    seconds: Math.round((performance.now() - started) / 10) / 100,
  };
}

function logSkips(progress: Progress, skips: SkipCount[]): void {
  for (const s of skips) {
    const at = s.firstLine !== null ? ` (first at line ${s.firstLine})` : "";
    progress.log(`skipped ${s.count} rows of ${s.file}: ${s.field}: ${s.problem}${at}`);
  }
}

function dedupSources(sources: SourceInfo[]): SourceInfo[] {
  const seen = new Set<string>();
  return sources.filter((s) => !seen.has(s.path) && seen.add(s.path));
}

function timeRange(seqs: Sequences): { min: number; max: number } {
  let min = Infinity, max = -Infinity;
  for (const t of seqs.seqTimes) {
    if (t < min) min = t;
    if (t > max) max = t;
  }
  return { min, max };
}

function modalityInfo(m: Feature, numItems: number): ModalityInfo {
  let present = 0;
  for (let i = 1; i <= numItems; i++) present += m.mask[i];
  return { dim: m.dim, coverage: present / numItems, source: m.source };
}

type Feature = ModalityArrays & { source: string };

/**
 * Image file of each item (index 0 = padding = null): the image column's path relative to
 * imageDir when the input names one, else ITEM_ID.jpg/.jpeg/.png in imageDir.
 */
async function imagePaths(
  o: ResolvedOptions,
  meta: ItemTable,
  itemIds: readonly string[],
): Promise<(string | null)[]> {
  if (o.imageCol) {
    return meta.map((m) => (m?.image ? resolve(o.imageDir!, m.image) : null));
  }
  return [null, ...(await itemImagePaths(o.imageDir!, itemIds))];
}

async function readFeatures(
  path: string,
  modality: string,
  featureIndex: Map<string, number>,
  numItems: number,
  ctx: ReadContext,
  sources: SourceInfo[],
): Promise<Feature> {
  const task = ctx.progress?.start(`reading ${modality} features ${basename(path)}`, null);
  const f = await readFeatureFile(path, featureIndex, numItems, {
    strict: ctx.issues.strict,
    progress: ctx.progress,
  });
  task?.done();
  ctx.issues.addSkipped(path, modality, "bad feature rows", f.skipped);
  sources.push(await hashFile(path));
  return { dim: f.dim, data: f.data, mask: f.mask, source: `file:${path}` };
}

interface Layers {
  widths: number[];
  data: Float32Array;
  source: string;
}

async function readLayers(
  path: string,
  modality: string,
  featureIndex: Map<string, number>,
  numItems: number,
  ctx: ReadContext,
  sources: SourceInfo[],
): Promise<Layers> {
  const task = ctx.progress?.start(`reading ${modality} layer states ${basename(path)}`, null);
  const f = await readLayerFeatureFile(path, featureIndex, numItems, {
    strict: ctx.issues.strict,
    progress: ctx.progress,
  });
  task?.done();
  ctx.issues.addSkipped(path, `${modality} layers`, "bad feature rows", f.skipped);
  sources.push(await hashFile(path));
  return { widths: f.widths, data: f.data, source: `file:${path}` };
}

function tableColumns(o: ResolvedOptions): TableColumns {
  return {
    user: o.userCol!,
    item: o.itemCol!,
    time: o.timeCol!,
    text: o.textCols ?? [],
    category: o.categoryCol ?? null,
    image: o.imageCol ?? null,
    title: o.titleCol ?? null,
  };
}

/**
 * What either engine hands to the rest of preprocess: the sequences, the source's hash, and the
 * raw ids the error messages and the feature readers need.
 */
export interface EngineResult {
  seqs: Sequences;
  source: SourceInfo;
  /** Distinct users among the valid input rows. */
  rawUsers: number;
  /** Every item of a valid input row, in order of first appearance (k-core survivors or not). */
  rawItemIds: string[];
}

/** The built-in engine: the format's reader into memory, then buildSequences. */
async function builtinSequences(o: ResolvedOptions, ctx: ReadContext): Promise<EngineResult> {
  const log = new InteractionLog();
  const source = await readInteractions(o, log, ctx);
  const seqs = buildSequences(log, o);
  return { seqs, source, rawUsers: log.userIds.length, rawItemIds: log.itemIds };
}

/** Streams the interaction rows through the format's reader into `log` (any sink). */
export async function readInteractions(
  o: ResolvedOptions,
  log: InteractionSink,
  ctx: ReadContext,
): Promise<SourceInfo> {
  switch (o.format) {
    case "amazon2014":
    case "amazon2018":
      return await readAmazonReviews(o.interactions, log, ctx);
    case "recbole":
      return await readRecboleInter(
        o.interactions,
        {
          user: o.userCol ?? "user_id",
          item: o.itemCol ?? "item_id",
          time: o.timeCol ?? "timestamp",
        },
        log,
        ctx,
      );
    default: {
      const cols = tableColumns(o);
      const table = openTable(o.interactions, o.format, ctx, [cols.user, cols.item, cols.time]);
      for await (const { row, line } of table.rows()) {
        for (const c of [cols.user, cols.item, cols.time]) {
          if (!(c in row)) throw new UsageError(`${o.interactions}: no column '${c}'`);
        }
        addInteraction(log, ctx, o.interactions, line, cols, {
          user: row[cols.user],
          item: row[cols.item],
          time: row[cols.time],
        });
      }
      return table.info;
    }
  }
}

/** Item side information for items 1..I; index 0 and items without any stay null. */
async function readItems(
  o: ResolvedOptions,
  itemIndex: ReadonlyMap<string, number>,
  numItems: number,
  ctx: ReadContext,
  sources: SourceInfo[],
): Promise<ItemTable> {
  const none = (): ItemTable => new Array(numItems + 1).fill(null);
  switch (o.format) {
    case "amazon2014":
    case "amazon2018": {
      if (!o.items) return none();
      const r = await readAmazonMeta(o.items, o.format, itemIndex, numItems, ctx);
      sources.push(r.source);
      return r.items;
    }
    case "recbole": {
      if (!o.items) return none();
      const r = await readRecboleItems(
        o.items,
        {
          item: o.itemCol ?? "item_id",
          text: o.textCols ?? null,
          category: o.categoryCol ?? null,
          title: o.titleCol ?? null,
          image: o.imageCol ?? null,
        },
        itemIndex,
        numItems,
        ctx,
      );
      sources.push(r.source);
      return r.items;
    }
    default: {
      const cols = tableColumns(o);
      const wanted = [...cols.text, cols.category, cols.image, cols.title].filter((c) =>
        c !== null
      ) as string[];
      // Without an item file the attributes come from the interaction rows (first row of each
      // item wins), read in a second pass so only surviving items are held.
      const path = o.items ?? o.interactions;
      if (wanted.length === 0) return none();
      const items = none();
      const table = openTable(path, o.format as TableFormat, ctx, [cols.item, ...wanted]);
      let checked = false;
      for await (const { row, line } of table.rows()) {
        if (!checked) {
          for (const c of [cols.item, ...wanted]) {
            if (!(c in row)) throw new UsageError(`${path}: no column '${c}'`);
          }
          checked = true;
        }
        const id = textValue(row[cols.item]);
        const i = typeof id === "string" ? itemIndex.get(id.trim()) : undefined;
        if (i === undefined || items[i] !== null) continue;
        const m = tableItem(row, cols, path, line, ctx);
        if (m) items[i] = m;
      }
      sources.push(table.info);
      return items;
    }
  }
}

function tableItem(
  row: Record<string, unknown>,
  cols: TableColumns,
  path: string,
  line: number,
  ctx: ReadContext,
): ItemMeta | null {
  const texts: (string | null)[] = [];
  for (const c of cols.text) {
    const v = textValue(row[c]);
    if (v === undefined) {
      ctx.issues.bad(path, line, c, "expected text", "wrong type");
      return null;
    }
    texts.push(v);
  }
  const categories = cols.category === null ? [] : categoryPaths(row[cols.category]);
  if (categories === undefined) {
    ctx.issues.bad(
      path,
      line,
      cols.category!,
      "expected a string or a list of strings",
      "wrong type",
    );
    return null;
  }
  const image = cols.image === null ? null : textValue(row[cols.image]);
  if (image === undefined) {
    ctx.issues.bad(path, line, cols.image!, "expected a path", "wrong type");
    return null;
  }
  const title = cols.title === null ? texts[0] ?? null : textValue(row[cols.title]) ?? null;
  return { title, text: joinText(texts), categories, image };
}
