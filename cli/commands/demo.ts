/**
 * `duaf demo`: the whole pipeline on the bundled real Beauty subset — preprocess, inspect, train
 * SASRec and DuAF-MAT, evaluate both, and recommend with explanations — by running the same
 * commands a user would type. Each step's command line is printed on stderr before it runs.
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { UsageError } from "../../core/errors.ts";
import type { Command } from "../command.ts";
import { choiceFlag, intFlag, parseFlags } from "../flags.ts";

const usage = `usage: duaf demo [--data beauty|movielens] [--out DIR] [--epochs N] [--backend NAME]
       (epochs default 4 on beauty, 15 on movielens)

Runs preprocess -> inspect -> train (SASRec, DuAF-MAT) -> eval -> recommend on bundled real data:
  beauty     (default) the Amazon Beauty 2014 subset in fixtures/beauty-mini: ID + text
  movielens  the MovieLens-100K subset in fixtures/ml-100k-mini with its posters' MobileNetV2
             features (fixtures/ml-100k-mini/image_mobilenet_v2.npy): ID + text + image, so
             MAT-MoE rebuilds the missing posters and the explanations weigh three modalities;
             window training (trainMode=window), as the original SASRec trains on long histories
Outputs go to --out (default: a new temporary directory, kept so you can look at it). stdout
carries each command's JSON output.`;

const fixture = (name: string) => fileURLToPath(new URL(`../../fixtures/${name}`, import.meta.url));

/** What each bundled dataset's demo preprocesses and trains with. */
const DEMOS = {
  beauty: {
    title: "preprocess the raw Amazon dumps into a dataset artifact",
    dir: "beauty-mini",
    preprocess: [
      "--format",
      "amazon2014",
      "--reviews",
      fixture("beauty-mini/reviews_Beauty_5.json.gz"),
      "--meta",
      fixture("beauty-mini/meta_Beauty.json.gz"),
    ],
    sets: ["batchSize=512"],
    epochs: 4,
    duafmat: "ID + text, time-aware fusion, VSCL",
  },
  movielens: {
    title: "preprocess MovieLens (RecBole files) with the posters' image features",
    dir: "ml-100k-mini",
    preprocess: [
      "--format",
      "recbole",
      "--inter",
      fixture("ml-100k-mini/ml-100k-mini.inter.gz"),
      "--item",
      fixture("ml-100k-mini/ml-100k-mini.item"),
      "--kcore",
      "0",
      "--image-features",
      fixture("ml-100k-mini/image_mobilenet_v2.npy"),
    ],
    // 150 users: small batches give the optimizer enough steps in a few seconds per epoch.
    sets: ["trainMode=window", "batchSize=16", "lr=0.003"],
    epochs: 15,
    duafmat: "ID + text + image, MAT-MoE for missing posters, CSCL, VSCL",
  },
} as const;

export const demoCommand: Command = {
  name: "demo",
  summary: "the whole pipeline on the bundled real data, in a few minutes",
  usage,
  async run(args) {
    const { values } = parseFlags("demo", args, {
      data: { type: "string" },
      out: { type: "string" },
      epochs: { type: "string" },
      backend: { type: "string" },
    });
    const { main } = await import("../app.ts");
    const out = values.out ?? await Deno.makeTempDir({ prefix: "duaf-demo-" });
    const backend = values.backend ? ["--backend", values.backend] : [];
    const demo =
      DEMOS[choiceFlag("data", values.data, ["beauty", "movielens"] as const) ?? "beauty"];
    const data = join(out, demo.dir);
    const epochs = intFlag("epochs", values.epochs, 1) ?? demo.epochs;
    const runs = { sasrec: join(out, "run-sasrec"), duafmat: join(out, "run-duafmat") };
    const step = async (title: string, argv: string[]) => {
      console.error(`\n== ${title}\n$ duaf ${argv.join(" ")}`);
      const t0 = performance.now();
      const code = await main(argv);
      if (code !== 0) throw new UsageError(`demo step failed (${title}), exit ${code}`);
      console.error(`(${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    };
    const t0 = performance.now();
    await step(`1. ${demo.title}`, ["preprocess", ...demo.preprocess, "--out", data]);
    await step("2. inspect it", ["inspect", data]);
    const common = [
      "--set",
      `epochs=${epochs}`,
      "--set",
      "patience=3",
      ...demo.sets.flatMap((kv) => ["--set", kv]),
      ...backend,
    ];
    await step("3. train SASRec (CE over all items)", [
      "train",
      data,
      "--model",
      "sasrec",
      "--out",
      runs.sasrec,
      ...common,
    ]);
    await step(`4. train DuAF-MAT (${demo.duafmat})`, [
      "train",
      data,
      "--model",
      "duafmat",
      "--out",
      runs.duafmat,
      ...common,
    ]);
    await step("5. evaluate both on the test split (full ranking)", [
      "eval",
      runs.sasrec,
      ...backend,
    ]);
    await step("", ["eval", runs.duafmat, ...backend]);
    const { loadDataset } = await import("../../core/data/dataset.ts");
    const users = (await loadDataset(data)).userIds().slice(0, 2);
    await step("6. recommend for two users, with DuAF's modality weights per step", [
      "recommend",
      runs.duafmat,
      ...users.flatMap((u) => ["--user", u]),
      "--k",
      "5",
      "--explain",
      ...backend,
    ]);
    console.error(
      `\ndemo finished in ${((performance.now() - t0) / 1000).toFixed(0)} s; outputs in ${out}`,
    );
    return 0;
  },
};
