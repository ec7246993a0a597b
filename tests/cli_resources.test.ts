// Running out of a resource is a configuration problem, not a crash: one line on stderr saying
// what ran out, how much was asked and what to change, exit 2, no stack trace (unless
// DUAF_DEBUG=1), and nothing half-written.
import assert from "node:assert/strict";
import { join } from "node:path";
import { isDiskFull, ResourceError } from "../core/errors.ts";
import { writeFileAtomic } from "../core/io/atomic.ts";
import { listDir } from "./helpers/run_cli.ts";
import { MAIN_TS, tinyDataset } from "./helpers/tiny_run.ts";

async function duaf(args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN_TS, ...args],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b).trim();
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

Deno.test("resources: an arena too small for the batch is one line with what to change", async () => {
  const root = await Deno.makeTempDir({ prefix: "duaf-resources-" });
  try {
    const ds = await tinyDataset(root);
    const run = join(root, "run");
    const sets = ["--set", "epochs=1", "--set", "maxSteps=2"];
    const args = ["train", ds, "--out", run, "--backend", "wasm", "--quiet", ...sets];
    // Past the estimate before the first step (tests/train_memory.test.ts), as when it is off.
    const r = await duaf(args, { DUAF_WASM_MEMORY: "160MiB", DUAF_MEMORY_CHECK: "0" });
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stdout, "");
    assert.equal(r.stderr.split("\n").length, 1, r.stderr);
    assert.match(
      r.stderr,
      /^duaf train: out of wasm arena memory allocating [\d.]+ [KM]iB \(limit 160\.0 MiB, .* in use\); lower tokenBudget \(now auto = \d+\) or batchSize \(now 2048\).*loss=gbce/,
    );
    // The new run failed before its first checkpoint: nothing of it is left.
    assert.deepEqual(listDir(root).filter((n) => n !== "ds"), []);
    // An empty folder the user gave as --out stays, empty.
    await Deno.mkdir(run);
    const intoEmpty = await duaf(args, { DUAF_WASM_MEMORY: "160MiB", DUAF_MEMORY_CHECK: "0" });
    assert.equal(intoEmpty.code, 2, intoEmpty.stderr);
    assert.deepEqual(listDir(run), []);
    await Deno.remove(run);
    const debug = await duaf(args, {
      DUAF_WASM_MEMORY: "160MiB",
      DUAF_DEBUG: "1",
      DUAF_MEMORY_CHECK: "0",
    });
    assert.equal(debug.code, 2);
    assert.match(debug.stderr, /\n\s*at .*arena\.ts/);
    // The same run fits with smaller micro-batches.
    const fits = await duaf([...args, "--set", "tokenBudget=4096"], {
      DUAF_WASM_MEMORY: "160MiB",
      DUAF_MEMORY_CHECK: "0",
    });
    assert.equal(fits.code, 0, fits.stderr);
    const bad = await duaf(args, { DUAF_WASM_MEMORY: "lots" });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^duaf train: .*DUAF_WASM_MEMORY: expected a size/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("resources: a full disk is one line and leaves no half-written file", async (t) => {
  // A real ENOSPC from the kernel (/dev/full) is recognised and reported with its path.
  const e = await Deno.writeFile("/dev/full", new Uint8Array(8)).then(() => null, (e) => e);
  assert.ok(isDiskFull(e), String(e));
  assert.ok(!isDiskFull(new Deno.errors.NotFound("x")));

  // A small tmpfs fills up while preprocess writes its artifact (needs root to mount).
  const mnt = await Deno.makeTempDir({ prefix: "duaf-full-" });
  const mount = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", "size=160k", "tmpfs", mnt],
    stderr: "null",
  }).output().catch(() => ({ success: false }));
  try {
    await t.step({
      name: "preprocess onto a full disk",
      ignore: !mount.success,
      fn: async () => {
        const run = join(mnt, "file.txt");
        await assert.rejects(
          () => writeFileAtomic(run, new Uint8Array(1 << 20)),
          (err: unknown) => err instanceof ResourceError && /out of disk space/.test(err.message),
        );
        const fixture = new URL("../fixtures/beauty-mini/", import.meta.url).pathname;
        const r = await duaf([
          "preprocess",
          "--format",
          "amazon2014",
          "--reviews",
          join(fixture, "reviews_Beauty_5.json.gz"),
          "--meta",
          join(fixture, "meta_Beauty.json.gz"),
          "--out",
          join(mnt, "ds"),
          "--quiet",
        ]);
        assert.equal(r.code, 2, r.stderr);
        assert.equal(r.stderr.split("\n").length, 1, r.stderr);
        assert.match(
          r.stderr,
          /^duaf preprocess: out of disk space \(writing .*\/ds\); free space/,
        );
        assert.deepEqual(listDir(mnt), []);
      },
    });
  } finally {
    if (mount.success) await new Deno.Command("umount", { args: [mnt] }).output();
    await Deno.remove(mnt, { recursive: true });
  }
});
