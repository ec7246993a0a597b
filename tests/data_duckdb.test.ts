// `preprocess --engine duckdb` writes the same artifact bytes as the built-in engine: every
// format, dedup mode, k-core and truncation, strict and lenient bad-input handling.
import assert from "node:assert/strict";
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { parquetWriteBuffer } from "hyparquet-writer";
import { listDir, runCli } from "./helpers/run_cli.ts";

const FIX = join(import.meta.dirname!, "../fixtures");
const BEAUTY_REVIEWS = join(FIX, "beauty-mini/reviews_Beauty_5.json.gz");
const BEAUTY_META = join(FIX, "beauty-mini/meta_Beauty.json.gz");
const ML_INTER = join(FIX, "ml-100k-mini/ml-100k-mini.inter.gz");
const ML_ITEM = join(FIX, "ml-100k-mini/ml-100k-mini.item");
// CI and the development machines keep the real data beside the repository.
const SHARED_BEAUTY = join(import.meta.dirname!, "../../shared/data/amazon-beauty-2014");

const ENGINES = ["builtin", "duckdb"] as const;

/** Runs preprocess with each engine into DIR/ENGINE/NAME (same base name: same manifest). */
async function bothEngines(
  dir: string,
  name: string,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }[]> {
  const results = [];
  for (const engine of ENGINES) {
    results.push(
      await runCli([
        "preprocess",
        "--quiet",
        "--text-dim",
        "8",
        "--engine",
        engine,
        "--out",
        join(dir, engine, name),
        ...args,
      ]),
    );
  }
  return results;
}

/** Every file of both artifacts, byte for byte. */
function assertSameArtifact(dir: string, name: string): void {
  const a = join(dir, "builtin", name), b = join(dir, "duckdb", name);
  const files = listDir(a);
  assert.deepEqual(listDir(b), files);
  assert.ok(files.includes("sequences.safetensors"));
  for (const f of files) {
    const x = Deno.readFileSync(join(a, f)), y = Deno.readFileSync(join(b, f));
    let k = 0;
    while (k < x.length && x[k] === y[k]) k++;
    assert.ok(k === x.length && x.length === y.length, `${name}/${f}: bytes differ at ${k}`);
  }
}

async function same(dir: string, name: string, args: string[]): Promise<Record<string, unknown>> {
  const [builtin, duckdb] = await bothEngines(dir, name, args);
  assert.equal(builtin.code, 0, builtin.stderr);
  assert.equal(duckdb.code, 0, duckdb.stderr);
  assertSameArtifact(dir, name);
  const summary = JSON.parse(duckdb.stdout);
  const ref = JSON.parse(builtin.stdout);
  for (const k of ["users", "items", "interactions", "filtering", "skipped"]) {
    assert.deepEqual(summary[k], ref[k], `${name}: ${k}`);
  }
  return summary;
}

async function withTmp(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function lines(gz: string): string[] {
  return new TextDecoder().decode(gunzipSync(Deno.readFileSync(gz))).trim().split("\n");
}

/**
 * beauty-mini's reviews with repeats: every 3rd review again a week later, every 5th again at
 * the same second (a tie that only input order breaks), in a shuffled-but-fixed order.
 */
function reviewsWithRepeats(): string[] {
  const rows = lines(BEAUTY_REVIEWS).map((l) => JSON.parse(l));
  const extra = [];
  for (let k = 0; k < rows.length; k++) {
    if (k % 3 === 0) extra.push({ ...rows[k], unixReviewTime: rows[k].unixReviewTime + 604800 });
    if (k % 5 === 0) extra.push({ ...rows[k] });
  }
  const all = [...rows, ...extra];
  for (let k = all.length - 1; k > 0; k--) {
    const j = (k * 7919) % (k + 1);
    [all[k], all[j]] = [all[j], all[k]];
  }
  return all.map((r) => JSON.stringify(r));
}

Deno.test("duckdb engine: beauty-mini (Amazon 2014 reviews + meta), same artifact", async () => {
  await withTmp(async (dir) => {
    const s = await same(dir, "beauty", [
      "--format",
      "amazon2014",
      "--reviews",
      BEAUTY_REVIEWS,
      "--meta",
      BEAUTY_META,
    ]);
    assert.equal(s.users, 1584);
  });
});

Deno.test("duckdb engine: ml-100k-mini (RecBole .inter.gz + .item), same artifact", async () => {
  await withTmp(async (dir) => {
    for (const kcore of ["0", "5"]) {
      await same(dir, `ml-k${kcore}`, [
        "--format",
        "recbole",
        "--inter",
        ML_INTER,
        "--item",
        ML_ITEM,
        "--kcore",
        kcore,
      ]);
    }
  });
});

Deno.test("duckdb engine: dedup first/last/none, k-core variants and max-seq-len", async () => {
  await withTmp(async (dir) => {
    const reviews = join(dir, "reviews.json");
    await Deno.writeTextFile(reviews, reviewsWithRepeats().join("\n") + "\n");
    const base = ["--format", "amazon2014", "--reviews", reviews];
    const cases: [string, string[]][] = [
      ["first", ["--dedup", "first"]],
      ["last", ["--dedup", "last"]],
      ["none", ["--dedup", "none"]],
      ["none-k3", ["--dedup", "none", "--kcore", "3"]],
      ["uc2-ic8", ["--user-core", "2", "--item-core", "8"]],
      ["uc9-ic1", ["--user-core", "9", "--item-core", "1"]],
      ["k0-len4", ["--kcore", "0", "--max-seq-len", "4"]],
      ["last-len7", ["--dedup", "last", "--max-seq-len", "7"]],
    ];
    for (const [name, args] of cases) {
      const s = await same(dir, name, [...base, ...args]);
      const f = s.filtering as Record<string, number>;
      if (name !== "none" && !name.startsWith("none")) assert.ok(f.duplicates > 0, name);
      if (name.includes("len")) assert.ok(f.truncated > 0, name);
      if (!name.startsWith("k0")) assert.ok(f.kcoreRemoved > 0, name);
    }
  });
});

Deno.test("duckdb engine: CSV, TSV (gzip), JSONL and Parquet tables, --time-unit ms", async () => {
  await withTmp(async (dir) => {
    const [, ...rows] = lines(ML_INTER);
    const cells = rows.map((r) => r.split("\t"));
    await Deno.writeTextFile(
      join(dir, "i.csv"),
      "user,item,rating,ts\r\n" +
        cells.map((c) => `"${c[0]}", ${c[1]} ,${c[2]},${c[3]}000`).join("\r\n"),
    );
    await Deno.writeFile(
      join(dir, "i.tsv.gz"),
      gzipSync(
        new TextEncoder().encode(
          "user\titem\tts\n" + cells.map((c) => `${c[0]}\t${c[1]}\t${c[3]}`).join("\n"),
        ),
      ),
    );
    await Deno.writeTextFile(
      join(dir, "i.jsonl"),
      cells.map((c, k) =>
        JSON.stringify({
          user: Number(c[0]),
          item: k % 2 ? c[1] : Number(c[1]),
          ts: k % 3 ? Number(c[3]) : c[3],
        })
      ).join("\n"),
    );
    await Deno.writeFile(
      join(dir, "i.parquet"),
      new Uint8Array(parquetWriteBuffer({
        columnData: [
          { name: "user", data: cells.map((c) => c[0]), type: "STRING" },
          { name: "item", data: cells.map((c) => Number(c[1])), type: "INT32" },
          { name: "ts", data: cells.map((c) => BigInt(c[3])), type: "INT64" },
        ],
        rowGroupSize: 4000,
      })),
    );
    const cols = ["--user-col", "user", "--item-col", "item", "--time-col", "ts"];
    await same(dir, "csv", [
      "--format",
      "csv",
      "--input",
      join(dir, "i.csv"),
      "--time-unit",
      "ms",
      ...cols,
      "--kcore",
      "2",
    ]);
    for (
      const [format, file] of [["tsv", "i.tsv.gz"], ["jsonl", "i.jsonl"], ["parquet", "i.parquet"]]
    ) {
      await same(dir, format, [
        "--format",
        format,
        "--input",
        join(dir, file),
        ...cols,
        "--kcore",
        "2",
      ]);
    }
  });
});

Deno.test("duckdb engine: a bad row stops strict mode with the builtin's file:line: field", async () => {
  await withTmp(async (dir) => {
    const good = lines(BEAUTY_REVIEWS).slice(0, 40);
    const cases: [string, string, RegExp][] = [
      [
        "time",
        '{"reviewerID": "U", "asin": "A", "unixReviewTime": "soon"}',
        /:23: unixReviewTime: 'soon' is not a number/,
      ],
      ["user", '{"asin": "A", "unixReviewTime": 1300000000}', /:23: reviewerID: missing$/],
      ["item", '{"reviewerID": "U", "asin": "  ", "unixReviewTime": 1}', /:23: asin: empty$/],
      [
        "ms",
        '{"reviewerID": "U", "asin": "A", "unixReviewTime": 1300000000000}',
        /:23: unixReviewTime: 1300000000000 is after 2100-01-01 \(milliseconds\?/,
      ],
      ["json", '{"reviewerID": "U", "asin": ', /:23: line: not JSON or a Python dict literal/],
    ];
    for (const [name, bad, error] of cases) {
      const file = join(dir, `${name}.json`);
      await Deno.writeTextFile(file, [...good.slice(0, 22), bad, ...good.slice(22)].join("\n"));
      const results = await bothEngines(dir, name, [
        "--format",
        "amazon2014",
        "--reviews",
        file,
        "--kcore",
        "0",
      ]);
      for (const r of results) {
        assert.equal(r.code, 2, r.stderr);
        assert.equal(r.stderr.split("\n").length, 1, r.stderr);
        assert.match(r.stderr, new RegExp(`^duaf preprocess: ${file}` + error.source));
      }
      assert.equal(results[1].stderr, results[0].stderr);
      // Lenient: the same rows are skipped and counted, the same artifact is written.
      const s = await same(dir, `${name}-lenient`, [
        "--format",
        "amazon2014",
        "--reviews",
        file,
        "--kcore",
        "0",
        "--lenient",
      ]);
      assert.equal(s.skipped, 1);
    }
    // RecBole and CSV rows name their line too.
    const inter = join(dir, "bad.inter");
    await Deno.writeTextFile(
      inter,
      "user_id:token\titem_id:token\ttimestamp:float\n1\t10\t5\n\n2\t\t7\n",
    );
    const csv = join(dir, "bad.csv");
    await Deno.writeTextFile(csv, "u,i,t\na,1,100\nb,2,x\n");
    for (
      const [name, args, error] of [
        ["inter", ["--format", "recbole", "--inter", inter], /bad\.inter:4: item_id: empty$/],
        [
          "csv",
          [
            "--format",
            "csv",
            "--input",
            csv,
            "--user-col",
            "u",
            "--item-col",
            "i",
            "--time-col",
            "t",
          ],
          /bad\.csv:3: t: 'x' is not a number or ISO-8601 date$/,
        ],
      ] as const
    ) {
      const [b, d] = await bothEngines(dir, name, [...args, "--kcore", "0"]);
      assert.equal(d.code, 2);
      assert.match(d.stderr, error);
      assert.equal(d.stderr, b.stderr);
    }
    assert.ok(!listDir(join(dir, "duckdb")).some((n) => !n.endsWith("-lenient")), "no artifact");
  });
});

Deno.test("duckdb engine: what it does not read is one line that names --engine builtin", async () => {
  await withTmp(async (dir) => {
    const iso = join(dir, "iso.csv");
    await Deno.writeTextFile(iso, "u,i,t\na,1,2014-03-01\nb,1,2014-03-02\n");
    const r = await runCli([
      "preprocess",
      "--quiet",
      "--engine",
      "duckdb",
      "--format",
      "csv",
      "--input",
      iso,
      "--user-col",
      "u",
      "--item-col",
      "i",
      "--time-col",
      "t",
      "--kcore",
      "0",
      "--out",
      join(dir, "out"),
    ]);
    assert.equal(r.code, 2);
    assert.equal(r.stderr.split("\n").length, 1);
    assert.match(
      r.stderr,
      /iso\.csv: --engine duckdb does not read ISO-8601 date timestamps \(record 1\); use --engine builtin/,
    );
    const usage = await runCli([
      "preprocess",
      "--engine",
      "spark",
      "--format",
      "csv",
      "--input",
      "x",
      "--out",
      "o",
    ]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--engine: expected one of builtin, duckdb/);
    assert.deepEqual(listDir(dir), ["iso.csv"]);
  });
});

Deno.test("duckdb engine: DuckDB out of memory is one resource line, exit 2", async () => {
  await withTmp(async (dir) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        join(import.meta.dirname!, "../cli/main.ts"),
        "preprocess",
        "--engine=duckdb",
        "--format=amazon2014",
        `--reviews=${BEAUTY_REVIEWS}`,
        `--out=${join(dir, "o")}`,
        "--quiet",
      ],
      env: { DUAF_DUCKDB_MEMORY: "2MB" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 2);
    const err = new TextDecoder().decode(out.stderr).trim().split("\n");
    assert.equal(err.length, 1, err.join("\n"));
    assert.match(err[0], /^duaf preprocess: out of DuckDB memory \(.*\); set DUAF_DUCKDB_MEMORY/);
    assert.deepEqual(listDir(dir), []);
  });
});

Deno.test({
  name: "duckdb engine: full Amazon Beauty 2014 (../shared/data), same artifact",
  ignore: !exists(join(SHARED_BEAUTY, "reviews_Beauty_5.json.gz")) &&
    (console.warn(`skipped: ${SHARED_BEAUTY} not found (the full Beauty data)`), true),
  async fn() {
    await withTmp(async (dir) => {
      const s = await same(dir, "beauty", [
        "--format",
        "amazon2014",
        "--reviews",
        join(SHARED_BEAUTY, "reviews_Beauty_5.json.gz"),
        "--meta",
        join(SHARED_BEAUTY, "meta_Beauty.json.gz"),
      ]);
      assert.equal(s.users, 22363);
      assert.equal(s.items, 12101);
      assert.equal(s.interactions, 198502);
    });
  },
});

function exists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}
