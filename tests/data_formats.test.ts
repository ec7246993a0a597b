// Every input format reads the same data into the same sequences; format-specific details.
import assert from "node:assert/strict";
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { parquetWriteBuffer } from "hyparquet-writer";
import { tableFromIPC } from "apache-arrow";
import { loadDataset } from "../core/data/dataset.ts";
import { parsePyLiteral } from "../core/data/pyliteral.ts";
import { TextSource } from "../core/data/source.ts";
import { listDir, runCli } from "./helpers/run_cli.ts";

const FIX = join(import.meta.dirname!, "../fixtures");
const ML_INTER = join(FIX, "ml-100k-mini/ml-100k-mini.inter.gz");

async function preprocess(args: string[]): Promise<Record<string, unknown>> {
  const r = await runCli(["preprocess", "--quiet", "--text-dim", "8", ...args]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

const bytes = (dir: string, file: string) => Deno.readFileSync(join(dir, file));

Deno.test("formats: RecBole, CSV, TSV, JSONL and Parquet give identical sequences", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const [header, ...rows] = new TextDecoder().decode(gunzipSync(Deno.readFileSync(ML_INTER)))
      .trim().split("\n");
    assert.equal(header, "user_id:token\titem_id:token\trating:float\ttimestamp:float");
    const cells = rows.map((r) => r.split("\t"));
    const ref = join(tmp, "ref");
    await preprocess(["--format", "recbole", "--inter", ML_INTER, "--kcore", "2", "--out", ref]);

    await Deno.writeTextFile(
      join(tmp, "i.csv"),
      "user,item,rating,ts\n" + cells.map((c) => `"${c[0]}",${c[1]},${c[2]},${c[3]}`).join("\r\n"),
    );
    await Deno.writeFile(
      join(tmp, "i.tsv.gz"),
      gzipSync(
        new TextEncoder().encode(
          "user\titem\tts\n" + cells.map((c) => `${c[0]}\t${c[1]}\t${c[3]}`).join("\n"),
        ),
      ),
    );
    await Deno.writeTextFile(
      join(tmp, "i.jsonl"),
      cells.map((c) => JSON.stringify({ user: Number(c[0]), item: c[1], ts: Number(c[3]) })).join(
        "\n",
      ),
    );
    await Deno.writeFile(
      join(tmp, "i.parquet"),
      new Uint8Array(parquetWriteBuffer({
        columnData: [
          { name: "user", data: cells.map((c) => c[0]), type: "STRING" },
          { name: "item", data: cells.map((c) => Number(c[1])), type: "INT32" },
          { name: "ts", data: cells.map((c) => BigInt(c[3])), type: "INT64" },
        ],
        rowGroupSize: 4000, // several row groups
      })),
    );
    for (
      const [format, file] of [["csv", "i.csv"], ["tsv", "i.tsv.gz"], ["jsonl", "i.jsonl"], [
        "parquet",
        "i.parquet",
      ]]
    ) {
      const out = join(tmp, format);
      await preprocess([
        "--format",
        format,
        "--input",
        join(tmp, file),
        "--user-col",
        "user",
        "--item-col",
        "item",
        "--time-col",
        "ts",
        "--kcore",
        "2",
        "--out",
        out,
      ]);
      assert.deepEqual(
        bytes(out, "sequences.safetensors"),
        bytes(ref, "sequences.safetensors"),
        format,
      );
      assert.deepEqual(bytes(out, "users.arrow"), bytes(ref, "users.arrow"), format);
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("formats: generic item columns (text, category, title) from a CSV item table", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      join(tmp, "inter.csv"),
      "u,i,t\n" +
        ["a", "b"].flatMap((u) => ["1", "2", "3"].map((i, k) => `${u},${i},${1e9 + k}`)).join("\n"),
    );
    await Deno.writeTextFile(
      join(tmp, "items.csv"),
      [
        "i,name,genres,blurb",
        '1,"Toy Story, the movie",Animation|Comedy,"a ""toy"" tale"',
        "2,Heat,Crime > Heist,",
        "3,Unknown film,,nothing known",
        "4,Never rated,Drama,not in the data",
      ].join("\n"),
    );
    const out = join(tmp, "out");
    await preprocess([
      "--format=csv",
      `--input=${join(tmp, "inter.csv")}`,
      `--item=${join(tmp, "items.csv")}`,
      "--user-col=u",
      "--item-col=i",
      "--time-col=t",
      "--text-cols=name,blurb",
      "--category-col=genres",
      "--kcore=0",
      `--out=${out}`,
    ]);
    const t = tableFromIPC(bytes(out, "items.arrow"));
    assert.deepEqual(t.getChild("title")!.toArray(), [
      "Toy Story, the movie",
      "Heat",
      "Unknown film",
    ]);
    assert.deepEqual(t.getChild("category")!.toArray(), ["Animation", "Heist", "unknown"]);
    const ds = await loadDataset(out);
    assert.deepEqual(ds.manifest.categories.names, ["unknown", "Animation", "Heist"]);
    assert.equal(ds.manifest.sources.length, 2);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("formats: CSV errors name the line; lenient skips ragged rows", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(join(tmp, "bad.csv"), 'u,i,t\na,1,100\nb,2\n"c,3,100\n');
    const args = [
      "preprocess",
      "--format=csv",
      `--input=${join(tmp, "bad.csv")}`,
      "--user-col=u",
      "--item-col=i",
      "--time-col=t",
      "--kcore=0",
      `--out=${join(tmp, "out")}`,
      "--quiet",
    ];
    const r = await runCli(args);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /bad\.csv:3: line: Invalid Record Length: columns length is 3, got 2/);
    const missing = await runCli([...args.slice(0, 4), "--item-col=nope", ...args.slice(5)]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /bad\.csv: no column 'nope'/);
    assert.deepEqual(listDir(tmp), ["bad.csv"]);
    const lenient = await runCli([...args, "--lenient"]);
    assert.equal(lenient.code, 0, lenient.stderr);
    const summary = JSON.parse(lenient.stdout);
    assert.equal(summary.interactions, 1, "the unclosed quote swallows the last row too");
    assert.equal(summary.skipped, 2);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("formats: RecBole header problems are one-line errors", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      join(tmp, "x.inter"),
      "user_id\titem_id:token\ttimestamp:float\n1\t2\t3\n",
    );
    let r = await runCli([
      "preprocess",
      "--format=recbole",
      `--inter=${join(tmp, "x.inter")}`,
      `--out=${join(tmp, "o")}`,
      "--quiet",
    ]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /x\.inter:1: column 1: header 'user_id' is not NAME:TYPE/);
    await Deno.writeTextFile(join(tmp, "x.inter"), "user_id:token\titem_id:token\n1\t2\n");
    r = await runCli([
      "preprocess",
      "--format=recbole",
      `--inter=${join(tmp, "x.inter")}`,
      `--out=${join(tmp, "o")}`,
      "--quiet",
    ]);
    assert.match(
      r.stderr,
      /no column 'timestamp' \(have user_id, item_id\); choose one with --time-col/,
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("formats: Amazon 2014 meta as JSON or Python literals gives the same items", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const reviews = join(FIX, "beauty-mini/reviews_Beauty_5.json.gz");
    const pyMeta = join(FIX, "beauty-mini/meta_Beauty.json.gz");
    // The same meta rewritten as JSON lines (the parser itself is checked against CPython
    // output in data_pyliteral.test.ts).
    const lines: string[] = [];
    for await (const [text] of new TextSource(pyMeta).lines()) {
      if (text) lines.push(JSON.stringify(parsePyLiteral(text)));
    }
    await Deno.writeTextFile(join(tmp, "meta.jsonl"), lines.join("\n"));
    const a = join(tmp, "a"), b = join(tmp, "b");
    await preprocess([
      "--format=amazon2014",
      `--reviews=${reviews}`,
      `--meta=${pyMeta}`,
      `--out=${a}`,
    ]);
    await preprocess([
      "--format=amazon2014",
      `--reviews=${reviews}`,
      `--meta=${join(tmp, "meta.jsonl")}`,
      `--out=${b}`,
    ]);
    assert.deepEqual(bytes(a, "items.safetensors"), bytes(b, "items.safetensors"));
    assert.deepEqual(bytes(a, "items.arrow"), bytes(b, "items.arrow"));
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("formats: Amazon 2018 reviews and meta (category list, image URLs)", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const reviews: string[] = [];
    for (const u of ["A1", "A2"]) {
      for (const [k, i] of ["P1", "P2", "P3"].entries()) {
        reviews.push(JSON.stringify({
          overall: 5.0,
          verified: true,
          reviewTime: "09 13, 2009",
          reviewerID: u,
          asin: i,
          unixReviewTime: 1252800000 + k,
          style: { "Size:": " 2 oz" },
        }));
      }
    }
    const meta = [
      {
        asin: "P1",
        title: "Argan oil",
        category: ["All Beauty", "Hair Care", "Oils"],
        brand: "Acme",
        imageURLHighRes: ["https://x/P1.jpg"],
        description: ["long"],
      },
      { asin: "P2", title: "Comb", category: [], brand: "", imageURL: [] },
      { asin: "P9", title: "Not reviewed", category: ["X"] },
    ];
    await Deno.writeTextFile(join(tmp, "r.json"), reviews.join("\n"));
    await Deno.writeFile(
      join(tmp, "m.json.gz"),
      gzipSync(new TextEncoder().encode(meta.map((m) => JSON.stringify(m)).join("\n"))),
    );
    const out = join(tmp, "out");
    const s = await preprocess([
      "--format=amazon2018",
      `--reviews=${join(tmp, "r.json")}`,
      `--meta=${join(tmp, "m.json.gz")}`,
      "--kcore=2",
      "--category=first",
      `--out=${out}`,
    ]);
    assert.equal(s.users, 2);
    assert.equal(s.items, 3);
    const t = tableFromIPC(bytes(out, "items.arrow"));
    assert.deepEqual(t.getChild("title")!.toArray(), ["Argan oil", "Comb", null]);
    assert.deepEqual(t.getChild("category")!.toArray(), ["All Beauty", "unknown", "unknown"]);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
