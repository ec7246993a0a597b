// `deno task bench NAME --help`: every benchmark prints its usage (its file's doc comment) and
// exits 0 without running; an unknown name is a usage error.
import assert from "node:assert/strict";
import { join } from "node:path";

const TOOLS = join(import.meta.dirname!, "..", "tools");

async function bench(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(TOOLS, "bench.ts"), ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

Deno.test("deno task bench NAME --help prints each benchmark's usage", async () => {
  const names = [...Deno.readDirSync(TOOLS)]
    .map((e) => /^bench_(\w+)\.ts$/.exec(e.name)?.[1])
    .filter((n): n is string => n !== undefined);
  assert.ok(names.includes("ops") && names.includes("train"), names.join(","));
  for (const name of names) {
    const r = await bench(name, "--help");
    assert.equal(r.code, 0, `${name}: ${r.stderr}`);
    const source = Deno.readTextFileSync(join(TOOLS, `bench_${name}.ts`));
    // The doc comment's first line of text, whether the comment is one line or several.
    const firstLine = /\/\*\*[ \t]*(?:\n\s*\*[ \t]*)?([^\n]*?)\s*(?:\*\/|\n)/.exec(source)![1];
    assert.ok(r.stdout.startsWith(firstLine), `${name}: ${JSON.stringify(r.stdout.slice(0, 80))}`);
    assert.ok(!r.stdout.includes("*/"), name);
  }
});

Deno.test("deno task bench with an unknown name: usage on stderr, exit 2", async () => {
  const r = await bench("no_such_bench");
  assert.equal(r.code, 2);
  assert.match(r.stderr, /usage: deno task bench NAME/);
  assert.equal(r.stdout, "");
});
