/**
 * `duaf preprocess` on the real datasets: wall time and peak RSS of a child process that runs
 * the CLI (it reads its own VmHWM from /proc at the end), and the counts the issue requires.
 * Targets: Amazon Beauty 2014 raw -> artifact with built-in text features in < 60 s and < 1 GB.
 *
 *   deno task bench preprocess [--data DIR]     (DIR default: ../shared/data)
 */
import { parseArgs } from "node:util";
import { join } from "node:path";

const ROOT = join(import.meta.dirname!, "..");

interface Case {
  name: string;
  args: (data: string) => string[];
  expect: { users: number; items: number; interactions: number };
  limits?: { seconds: number; rssMiB: number };
}

const CASES: Case[] = [
  {
    name: "amazon-beauty-2014 (5-core, tfidf-svd text dim 64)",
    args: (d) => [
      "--format=amazon2014",
      `--reviews=${join(d, "amazon-beauty-2014/reviews_Beauty_5.json.gz")}`,
      `--meta=${join(d, "amazon-beauty-2014/meta_Beauty.json.gz")}`,
    ],
    expect: { users: 22363, items: 12101, interactions: 198502 },
    limits: { seconds: 60, rssMiB: 1024 },
  },
  {
    name: "ml-100k (RecBole atomic, no k-core)",
    args: (d) => [
      "--format=recbole",
      `--inter=${join(d, "ml-100k/ml-100k.inter.gz")}`,
      `--item=${join(d, "ml-100k/ml-100k.item")}`,
      "--kcore=0",
    ],
    expect: { users: 943, items: 1682, interactions: 100000 },
  },
];

/** Child mode: run the CLI in this process, then report peak RSS on the last stderr line. */
async function child(args: string[]): Promise<never> {
  const { main } = await import("../cli/main.ts");
  const code = await main(args);
  const hwm = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"))?.[1];
  console.error(`peak-rss-kib ${hwm ?? "unknown"}`);
  Deno.exit(code);
}

async function bench(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: { data: { type: "string", default: join(ROOT, "../shared/data") } },
  });
  const data = values.data!;
  let failed = false;
  for (const c of CASES) {
    const out = await Deno.makeTempDir({ prefix: "duaf-bench-" });
    try {
      const started = performance.now();
      const proc = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          import.meta.filename!,
          "--child",
          "preprocess",
          ...c.args(data),
          `--out=${join(out, "ds")}`,
          "--quiet",
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const wall = (performance.now() - started) / 1000;
      const stderr = new TextDecoder().decode(proc.stderr);
      if (!proc.success) {
        console.log(`${c.name}: FAILED (exit ${proc.code})\n${stderr}`);
        failed = true;
        continue;
      }
      const s = JSON.parse(new TextDecoder().decode(proc.stdout));
      const rssMiB = Number(/peak-rss-kib (\d+)/.exec(stderr)?.[1]) / 1024;
      const countsOk = s.users === c.expect.users && s.items === c.expect.items &&
        s.interactions === c.expect.interactions;
      const limitsOk = !c.limits || (wall < c.limits.seconds && rssMiB < c.limits.rssMiB);
      failed ||= !countsOk || !limitsOk;
      console.log(
        [
          `${c.name}`,
          `  counts     users ${s.users}, items ${s.items}, interactions ${s.interactions} ` +
          `(expected ${c.expect.users}, ${c.expect.items}, ${c.expect.interactions}: ` +
          `${countsOk ? "ok" : "MISMATCH"})`,
          `  wall       ${wall.toFixed(2)} s (process start to exit; preprocess itself ` +
          `${s.seconds} s)`,
          `  peak RSS   ${rssMiB.toFixed(0)} MiB`,
          c.limits
            ? `  target     < ${c.limits.seconds} s and < ${c.limits.rssMiB} MiB: ` +
              `${limitsOk ? "met" : "MISSED"}`
            : "",
        ].filter((l) => l !== "").join("\n"),
      );
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  }
  if (failed) Deno.exit(1);
}

if (import.meta.main) {
  if (Deno.args[0] === "--child") await child(Deno.args.slice(1));
  else await bench();
}
