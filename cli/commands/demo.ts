/**
 * `duaf demo`: the whole pipeline on the bundled real Beauty subset — preprocess, inspect, train
 * SASRec and DuAF-MAT, evaluate both, and recommend with explanations — by running the same
 * commands a user would type. Each step's command line is printed on stderr before it runs.
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { UsageError } from "../../core/errors.ts";
import type { Command } from "../command.ts";
import { intFlag, parseFlags } from "../flags.ts";

const usage = `usage: duaf demo [--out DIR] [--epochs N] [--backend NAME]

Runs preprocess -> inspect -> train (SASRec, DuAF-MAT) -> eval -> recommend on the real Amazon
Beauty 2014 subset in fixtures/beauty-mini. Outputs go to --out (default: a new temporary
directory, kept so you can look at it). stdout carries each command's JSON output.`;

const fixture = (name: string) =>
  fileURLToPath(new URL(`../../fixtures/beauty-mini/${name}`, import.meta.url));

export const demoCommand: Command = {
  name: "demo",
  summary: "the whole pipeline on the bundled real data, in a few minutes",
  usage,
  async run(args) {
    const { values } = parseFlags("demo", args, {
      out: { type: "string" },
      epochs: { type: "string" },
      backend: { type: "string" },
    });
    const { main } = await import("../app.ts");
    const out = values.out ?? await Deno.makeTempDir({ prefix: "duaf-demo-" });
    const epochs = intFlag("epochs", values.epochs, 1) ?? 4;
    const backend = values.backend ? ["--backend", values.backend] : [];
    const data = join(out, "beauty-mini");
    const runs = { sasrec: join(out, "run-sasrec"), duafmat: join(out, "run-duafmat") };
    const step = async (title: string, argv: string[]) => {
      console.error(`\n== ${title}\n$ duaf ${argv.join(" ")}`);
      const t0 = performance.now();
      const code = await main(argv);
      if (code !== 0) throw new UsageError(`demo step failed (${title}), exit ${code}`);
      console.error(`(${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    };
    const t0 = performance.now();
    await step("1. preprocess the raw Amazon dumps into a dataset artifact", [
      "preprocess",
      "--format",
      "amazon2014",
      "--reviews",
      fixture("reviews_Beauty_5.json.gz"),
      "--meta",
      fixture("meta_Beauty.json.gz"),
      "--out",
      data,
    ]);
    await step("2. inspect it", ["inspect", data]);
    const common = [
      "--set",
      `epochs=${epochs}`,
      "--set",
      "patience=3",
      "--set",
      "batchSize=512",
      ...backend,
    ];
    await step("3. train SASRec (RecBole defaults, CE over all items)", [
      "train",
      data,
      "--model",
      "sasrec",
      "--out",
      runs.sasrec,
      ...common,
    ]);
    await step("4. train DuAF-MAT (ID + text, time-aware fusion, VSCL)", [
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
