// Output paths: every command that writes replaces only what duaf wrote earlier. Real directories
// and files that hold something else are refused with one line naming the path and --force, and
// every foreign file survives; an empty directory is filled; the same kind of artifact is
// replaced; --force replaces anything but the working directory and the folders above it.
import assert from "node:assert/strict";
import { join } from "node:path";
import { listDir, runCli } from "./helpers/run_cli.ts";
import {
  MAIN_TS,
  TINY_SETS,
  tinyDataset,
  tinyPreprocessArgs,
  tinyTrain,
  tinyTrainArgs,
} from "./helpers/tiny_run.ts";

/** preprocess of the beauty-mini fixture into `out`, quietly. */
const preprocess = (out: string, ...extra: string[]) => [
  ...tinyPreprocessArgs(out),
  "--quiet",
  ...extra,
];
const ONE_EPOCH = [...TINY_SETS.filter((s) => !s.startsWith("epochs=")), "epochs=1"];

/** A user's folder: one file of their own (and a subfolder) that duaf must never touch. */
async function foreignDir(path: string): Promise<string> {
  await Deno.mkdir(join(path, "notes"), { recursive: true });
  await Deno.writeTextFile(join(path, "thesis.tex"), "my thesis\n");
  await Deno.writeTextFile(join(path, "notes", "a.txt"), "notes\n");
  return path;
}

async function assertForeignSurvives(path: string): Promise<void> {
  assert.equal(await Deno.readTextFile(join(path, "thesis.tex")), "my thesis\n");
  assert.equal(await Deno.readTextFile(join(path, "notes", "a.txt")), "notes\n");
}

/** Exit 2, one stderr line naming the path and --force, nothing on stdout. */
function assertRefused(r: { code: number; stdout: string; stderr: string }, path: string) {
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.stdout, "");
  assert.equal(r.stderr.split("\n").length, 1, r.stderr);
  assert.ok(r.stderr.includes(path), r.stderr);
  assert.match(r.stderr, /--force/);
}

/** No temporary file or directory left beside `path`. */
function assertNoTemp(parent: string): void {
  assert.deepEqual(listDir(parent).filter((n) => n.startsWith(".duaf-tmp-")), []);
}

Deno.test("output paths: duaf replaces only what it wrote", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "duaf-outputs-" });
  try {
    const ds = await tinyDataset(root);

    await t.step("preprocess refuses a folder that is not a dataset", async () => {
      const dir = await foreignDir(join(root, "mine"));
      assertRefused(await runCli(preprocess(dir)), dir);
      await assertForeignSurvives(dir);
      assert.deepEqual(listDir(dir), ["notes", "thesis.tex"]);
      assertNoTemp(root);
    });

    await t.step("preprocess refuses a dataset folder that holds a foreign file", async () => {
      const dir = join(root, "ds-plus");
      assert.equal((await runCli(preprocess(dir))).code, 0);
      await Deno.writeTextFile(join(dir, "thesis.tex"), "my thesis\n");
      const r = await runCli(preprocess(dir));
      assertRefused(r, dir);
      assert.match(r.stderr, /thesis\.tex/);
      assert.equal(await Deno.readTextFile(join(dir, "thesis.tex")), "my thesis\n");
    });

    await t.step("preprocess fills an empty folder and replaces its own dataset", async () => {
      const dir = join(root, "empty");
      await Deno.mkdir(dir);
      assert.equal((await runCli(preprocess(dir))).code, 0);
      const before = await Deno.readTextFile(join(dir, "manifest.json"));
      const again = await runCli(preprocess(dir, "--kcore", "3"));
      assert.equal(again.code, 0, again.stderr);
      assert.notEqual(await Deno.readTextFile(join(dir, "manifest.json")), before);
      assertNoTemp(root);
    });

    await t.step("preprocess --force replaces a foreign folder", async () => {
      const dir = await foreignDir(join(root, "forced"));
      const r = await runCli(preprocess(dir, "--force"));
      assert.equal(r.code, 0, r.stderr);
      assert.ok(listDir(dir).includes("manifest.json"));
      assert.ok(!listDir(dir).includes("thesis.tex"));
    });

    await t.step("--out . is refused even with --force", async () => {
      const cwd = await foreignDir(join(root, "cwd"));
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", MAIN_TS, ...preprocess(".", "--force")],
        cwd,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(out.stderr).trim();
      assert.equal(out.code, 2, stderr);
      assert.match(stderr, /working directory/);
      await assertForeignSurvives(cwd);
    });

    await t.step("train refuses a folder that is not a run, and writes nothing there", async () => {
      const dir = await foreignDir(join(root, "run-mine"));
      assertRefused(await runCli(tinyTrainArgs(ds, dir, ONE_EPOCH)), dir);
      assert.deepEqual(listDir(dir), ["notes", "thesis.tex"]);
      await assertForeignSurvives(dir);
    });

    await t.step("train replaces a finished run, refuses an unfinished one", async () => {
      const dir = join(root, "run");
      await tinyTrain(ds, dir, ONE_EPOCH);
      // The default export path sits in the run; a new run must not keep the old graph.
      const exp = await runCli(["export", dir, "--backend", "wasm", "--quiet"]);
      assert.equal(exp.code, 0, exp.stderr);
      await tinyTrain(ds, dir, [...ONE_EPOCH, "seed=3"]);
      assert.deepEqual(listDir(dir), ["manifest.json", "model.safetensors", "state.safetensors"]);
      const m = JSON.parse(await Deno.readTextFile(join(dir, "manifest.json")));
      m.status = "interrupted";
      await Deno.writeTextFile(join(dir, "manifest.json"), JSON.stringify(m));
      const r = await runCli(tinyTrainArgs(ds, dir, ONE_EPOCH));
      assert.equal(r.code, 2);
      assert.match(r.stderr, /unfinished run; --resume .* --force replaces it$/);
      const forced = await runCli([...tinyTrainArgs(ds, dir, ONE_EPOCH), "--force"]);
      assert.equal(forced.code, 0, forced.stderr);
    });

    await t.step("export and report replace their own files only", async () => {
      const run = join(root, "run");
      const onnx = join(root, "model.onnx");
      const html = join(root, "report.html");
      for (const f of [onnx, html]) await Deno.writeTextFile(f, "my file\n");
      const exp = ["export", run, "--onnx", onnx, "--backend", "wasm", "--quiet"];
      const rep = ["report", run, "--out", html, "--backend", "wasm", "--quiet"];
      assertRefused(await runCli(exp), onnx);
      assertRefused(await runCli(rep), html);
      for (const f of [onnx, html]) assert.equal(await Deno.readTextFile(f), "my file\n");
      // --force once, then duaf's own files are replaced without it.
      for (const args of [exp, rep]) {
        assert.equal((await runCli([...args, "--force"])).code, 0);
        const again = await runCli(args);
        assert.equal(again.code, 0, again.stderr);
      }
      assert.match(await Deno.readTextFile(html), /<meta name="generator" content="duaf report">/);
      assertNoTemp(root);
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
