/**
 * Benchmark dispatcher: `deno task bench NAME [args]` runs tools/bench_NAME.ts in a child Deno
 * with the same flags, so each benchmark gets a fresh process (clean timings and peak RSS) and
 * reads its own arguments from Deno.args.
 */
import { join } from "node:path";

const [name, ...rest] = Deno.args;
const dir = import.meta.dirname!;
const available = [...Deno.readDirSync(dir)]
  .map((e) => /^bench_(\w+)\.ts$/.exec(e.name)?.[1])
  .filter((n): n is string => n !== undefined)
  .sort();

if (!name || !available.includes(name)) {
  console.error(`usage: deno task bench NAME [args]   (NAME: ${available.join(", ")})`);
  Deno.exit(2);
}

// Each benchmark's usage is its file's leading doc comment: printed for --help instead of letting
// the benchmark's own option parser reject the flag.
if (rest.includes("--help") || rest.includes("-h")) {
  console.log(usageOf(Deno.readTextFileSync(join(dir, `bench_${name}.ts`))));
  Deno.exit(0);
}

/** The text of a module's first doc comment, without its comment markers. */
function usageOf(source: string): string {
  const m = /\/\*\*([\s\S]*?)\*\//.exec(source);
  if (!m) return "";
  return m[1].split("\n").map((l) => l.replace(/^\s*\* ?/, "")).join("\n").trim();
}

const child = new Deno.Command(Deno.execPath(), {
  args: ["run", "-A", "--v8-flags=--no-liftoff", join(dir, `bench_${name}.ts`), ...rest],
  stdin: "inherit",
  stdout: "inherit",
  stderr: "inherit",
}).spawn();
Deno.exit((await child.status).code);
