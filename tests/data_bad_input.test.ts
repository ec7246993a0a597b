// Bad input: strict mode stops with one line `file:line: field: problem` and exit 2, leaving no
// artifact (and an existing one untouched); lenient mode skips, counts and summarises.
import assert from "node:assert/strict";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { listDir, runCli } from "./helpers/run_cli.ts";

/** Reviews where 3 users x 3 items all interact (so a 3-core keeps everything). */
function goodReviews(): string[] {
  const lines: string[] = [];
  for (const u of ["U1", "U2", "U3"]) {
    ["A", "B", "C"].forEach((i, k) => {
      lines.push(
        JSON.stringify({ reviewerID: u, asin: i, unixReviewTime: 1300000000 + k * 86400 }),
      );
    });
  }
  return lines;
}

const GOOD_META = [
  "{'asin': 'A', 'title': 'Red lipstick', 'categories': [['Beauty', 'Makeup', 'Lips']]}",
  "{'asin': 'B', 'title': 'Blue lipstick', 'categories': [['Beauty', 'Makeup', 'Lips']]}",
  "{'asin': 'C', 'title': 'Shampoo', 'categories': [['Beauty', 'Hair']]}",
];

interface Case {
  name: string;
  reviews?: string[];
  meta?: string[];
  /** Extra files: name -> content. */
  files?: Record<string, string>;
  args?: string[];
  /** Expected one-line error (regex over the message after "duaf preprocess: "). */
  error: RegExp;
  /** Skip count expected in lenient mode; null when the case is fatal in both modes. */
  lenientSkips: number | null;
}

const CASES: Case[] = [
  {
    name: "malformed line",
    reviews: [...goodReviews(), '{"reviewerID": "U4", "asin": '],
    error: /reviews\.json:10: line: not JSON or a Python dict literal/,
    lenientSkips: 1,
  },
  {
    name: "missing field",
    reviews: [...goodReviews(), '{"reviewerID": "U4", "unixReviewTime": 1300000000}'],
    error: /reviews\.json:10: asin: missing$/,
    lenientSkips: 1,
  },
  {
    name: "non-numeric timestamp",
    reviews: [...goodReviews(), '{"reviewerID": "U4", "asin": "A", "unixReviewTime": "soon"}'],
    error: /reviews\.json:10: unixReviewTime: 'soon' is not a number or ISO-8601 date/,
    lenientSkips: 1,
  },
  {
    name: "absurd timestamp",
    reviews: [
      '{"reviewerID": "U4", "asin": "A", "unixReviewTime": 1300000000000}',
      ...goodReviews(),
    ],
    error: /reviews\.json:1: unixReviewTime: 1300000000000 is after 2100-01-01 \(milliseconds\?/,
    lenientSkips: 1,
  },
  {
    name: "negative timestamp",
    reviews: [...goodReviews(), '{"reviewerID": "U4", "asin": "A", "unixReviewTime": -1}'],
    error: /reviews\.json:10: unixReviewTime: -1 is before 1970/,
    lenientSkips: 1,
  },
  {
    name: "id of the wrong type",
    reviews: [...goodReviews(), '{"reviewerID": ["U4"], "asin": "A", "unixReviewTime": 1}'],
    error: /reviews\.json:10: reviewerID: \["U4"\] is not a string or integer id/,
    lenientSkips: 1,
  },
  {
    name: "malformed meta line",
    meta: [...GOOD_META.slice(0, 2), "{'asin': 'C', 'title': 'unterminated}"],
    error: /meta\.json:3: line: not JSON or a Python dict literal \(unterminated string/,
    lenientSkips: 1,
  },
  {
    name: "meta categories of the wrong shape",
    meta: [...GOOD_META.slice(0, 2), "{'asin': 'C', 'title': 'x', 'categories': 'Hair'}"],
    error: /meta\.json:3: categories: expected a list of lists of strings/,
    lenientSkips: 1,
  },
  {
    name: "feature rows for unknown items",
    files: {
      "text.jsonl": [
        '{"id": "A", "vector": [1, 0]}',
        '{"id": "B", "vector": [0, 1]}',
        '{"id": "NOPE", "vector": [1, 1]}',
      ].join("\n"),
    },
    args: ["--text-features", "text.jsonl"],
    error: /text\.jsonl:3: id: unknown item "NOPE"/,
    lenientSkips: 1,
  },
  {
    name: "NaN in features",
    files: {
      "image.jsonl": ['{"id": "A", "vector": [1, 0]}', '{"id": "B", "vector": [NaN, 1]}'].join(
        "\n",
      ),
    },
    args: ["--image-features", "image.jsonl"],
    error: /image\.jsonl:2: vector: contains NaN or Infinity/,
    lenientSkips: 1,
  },
  {
    name: "Inf in features",
    files: {
      "image.jsonl": ['{"id": "A", "vector": [1, 0]}', '{"id": "B", "vector": [1e39, 1]}'].join(
        "\n",
      ),
    },
    args: ["--image-features", "image.jsonl"],
    error: /image\.jsonl:2: vector: element 0 is 1e\+39 \(outside the float32 range\)/,
    lenientSkips: 1,
  },
  {
    name: "wrong feature dimension",
    files: {
      "image.jsonl": ['{"id": "A", "vector": [1, 0]}', '{"id": "B", "vector": [1, 0, 0]}'].join(
        "\n",
      ),
    },
    args: ["--image-features", "image.jsonl"],
    error: /image\.jsonl:2: vector: has 3 values, expected 2/,
    lenientSkips: 1,
  },
  {
    name: "empty result after k-core",
    args: ["--kcore", "4"],
    error: /reviews\.json: no interactions left after the 4-core \(users\) \/ 4-core \(items\)/,
    lenientSkips: null,
  },
  {
    name: "no valid rows at all",
    reviews: ["{}", "[]"],
    error: /reviews\.json:1: reviewerID: missing/,
    lenientSkips: null,
  },
  {
    name: "missing input file",
    files: {},
    args: ["--meta", "does-not-exist.json"],
    error: /does-not-exist\.json: no such file$/,
    lenientSkips: null,
  },
];

async function setup(dir: string, c: Case): Promise<string[]> {
  await Deno.writeTextFile(
    join(dir, "reviews.json"),
    (c.reviews ?? goodReviews()).join("\n") + "\n",
  );
  await Deno.writeTextFile(join(dir, "meta.json"), (c.meta ?? GOOD_META).join("\n") + "\n");
  for (const [name, text] of Object.entries(c.files ?? {})) {
    await Deno.writeTextFile(join(dir, name), text);
  }
  const args = (c.args ?? []).map((a) => (a.includes(".") ? join(dir, a) : a));
  const hasMeta = args.includes("--meta");
  return [
    "preprocess",
    "--format",
    "amazon2014",
    "--reviews",
    join(dir, "reviews.json"),
    ...(hasMeta ? [] : ["--meta", join(dir, "meta.json")]),
    "--kcore",
    "3",
    "--text-dim",
    "2",
    "--out",
    join(dir, "out"),
    "--quiet",
    ...args,
  ];
}

for (const c of CASES) {
  Deno.test(`bad input (strict): ${c.name}`, async () => {
    const dir = await Deno.makeTempDir();
    try {
      const args = await setup(dir, c);
      const before = listDir(dir);
      const r = await runCli(args);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stdout, "");
      assert.equal(r.stderr.split("\n").length, 1, `one line: ${r.stderr}`);
      assert.match(r.stderr, /^duaf preprocess: /);
      assert.match(r.stderr, c.error);
      assert.deepEqual(listDir(dir), before, "no artifact and no temporary directory");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
  Deno.test(`bad input (lenient): ${c.name}`, async () => {
    const dir = await Deno.makeTempDir();
    try {
      const args = [...(await setup(dir, c)), "--lenient"];
      const r = await runCli(args);
      if (c.lenientSkips === null) {
        assert.equal(r.code, 2);
        assert.ok(!listDir(dir).includes("out"));
        return;
      }
      assert.equal(r.code, 0, r.stderr);
      const summary = JSON.parse(r.stdout);
      assert.equal(summary.skipped, c.lenientSkips);
      assert.equal(summary.filtering.skipped.length, 1);
      assert.equal(summary.users, 3);
      const manifest = JSON.parse(await Deno.readTextFile(join(dir, "out", "manifest.json")));
      assert.deepEqual(manifest.filtering.skipped, summary.filtering.skipped);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("bad input: a failed run leaves the previous artifact in place", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const good = await setup(dir, { name: "good", error: /./, lenientSkips: null });
    assert.equal((await runCli(good)).code, 0);
    const manifest = await Deno.readTextFile(join(dir, "out", "manifest.json"));
    await Deno.writeTextFile(join(dir, "reviews.json"), '{"reviewerID": "U1", "asin": 5}\n');
    const r = await runCli(good);
    assert.equal(r.code, 2);
    assert.equal(await Deno.readTextFile(join(dir, "out", "manifest.json")), manifest);
    assert.deepEqual(listDir(dir), ["meta.json", "out", "reviews.json"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bad input: corrupt gzip and invalid UTF-8 are one-line errors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const gz = gzipSync(new TextEncoder().encode(goodReviews().join("\n")));
    await Deno.writeFile(join(dir, "cut.json.gz"), gz.subarray(0, gz.length - 12));
    await Deno.writeFile(join(dir, "latin1.json"), new Uint8Array([0x7b, 0xe9, 0x7d, 0x0a]));
    for (
      const [file, msg] of [["cut.json.gz", /corrupt or truncated gzip/], [
        "latin1.json",
        /not valid UTF-8/,
      ]]
    ) {
      const r = await runCli([
        "preprocess",
        "--format=amazon2014",
        `--reviews=${join(dir, file as string)}`,
        `--out=${join(dir, "out")}`,
        "--quiet",
      ]);
      assert.equal(r.code, 2);
      assert.equal(r.stderr.split("\n").length, 1);
      assert.match(r.stderr, msg as RegExp);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bad usage: flags are checked before any reading", async () => {
  const cases: [string[], RegExp][] = [
    [["--reviews", "r.json", "--out", "o"], /--format is required/],
    [["--format", "amazon2014", "--out", "o"], /needs --reviews FILE/],
    [["--format", "amazon2014", "--inter", "x", "--out", "o"], /--inter does not apply/],
    [
      ["--format", "csv", "--input", "x", "--out", "o"],
      /needs --user-col, --item-col and --time-col/,
    ],
    [
      ["--format", "recbole", "--inter", "x", "--out", "o", "--kcore", "5x"],
      /--kcore: expected an integer >= 0/,
    ],
    [
      ["--format", "recbole", "--inter", "x", "--out", "o", "--category", "deep"],
      /--category: expected one of leaf, first, set/,
    ],
    [
      ["--format", "recbole", "--inter", "x", "--out", "o", "--strict", "--lenient"],
      /exclude each other/,
    ],
    [
      ["--format", "recbole", "--inter", "x", "--out", "o", "--text-encoder", "m.onnx"],
      /needs --vocab/,
    ],
    [["--format", "recbole", "--inter", "x", "--out", "o", "--bogus"], /Unknown option '--bogus'/],
  ];
  for (const [args, msg] of cases) {
    const r = await runCli(["preprocess", ...args, "--quiet"]);
    assert.equal(r.code, 2, args.join(" "));
    assert.match(r.stderr, msg);
    assert.equal(r.stderr.split("\n").length, 1);
  }
});

Deno.test("bad input: the real CLI process prints one line on stderr and exits 2", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(join(dir, "r.json"), '{"reviewerID": "U", "asin": "A"}\n');
    const main = join(import.meta.dirname!, "../cli/main.ts");
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        main,
        "preprocess",
        "--format=amazon2014",
        `--reviews=${join(dir, "r.json")}`,
        `--out=${join(dir, "o")}`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 2);
    assert.equal(out.stdout.length, 0);
    const err = new TextDecoder().decode(out.stderr).trim().split("\n");
    assert.deepEqual(err.slice(-1), [
      `duaf preprocess: ${join(dir, "r.json")}:1: unixReviewTime: missing`,
    ]);
    assert.ok(!err.some((l) => /^\s+at /.test(l)), "no stack trace");
    assert.deepEqual(listDir(dir), ["r.json"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("meta rows of items outside the data are not parsed (streams large dumps)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const c: Case = {
      name: "",
      meta: [...GOOD_META, "{'asin': 'NOT-REVIEWED', 'title': broken"],
      error: /./,
      lenientSkips: null,
    };
    const r = await runCli(await setup(dir, c));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).skipped, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
