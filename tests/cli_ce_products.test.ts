// ceProducts=bf16 from the CLI: a run on the native backend where the CPU has AVX-512 BF16 is
// reproducible to the byte and differs from the float32 run; where the bf16 products cannot run
// (another backend, a sampled loss, CE in item blocks) training stops before anything is written,
// with one line that says why, exit 2.
import assert from "node:assert/strict";
import { join } from "node:path";
import { NativeBackend } from "../core/backends/native.ts";
import { listDir, runCliProcess } from "./helpers/run_cli.ts";
import { setFlags, TINY_SETS, tinyDataset } from "./helpers/tiny_run.ts";

const opened = await NativeBackend.open();
const hasBf16 = !("unavailable" in opened) && opened.productsBf16 === true;

async function duaf(args: string[]) {
  const r = await runCliProcess(args);
  return { code: r.code, stdout: r.stdout.trim(), stderr: r.stderr.trim() };
}

Deno.test("ceProducts=bf16: refused in one line where its products cannot run", async () => {
  const root = await Deno.makeTempDir({ prefix: "duaf-ce-products-" });
  try {
    const ds = await tinyDataset(root);
    const train = (backend: string, ...sets: string[]) =>
      duaf([
        "train",
        ds,
        "--out",
        join(root, "run"),
        "--backend",
        backend,
        "--quiet",
        ...setFlags([...TINY_SETS, "ceProducts=bf16", ...sets]),
      ]);
    const cases: [Promise<{ code: number; stdout: string; stderr: string }>, RegExp][] = [
      [train("wasm"), /ceProducts=bf16 needs the native backend's C kernels .*backend wasm/],
      [train("native", "loss=gbce"), /ceProducts=bf16 applies to loss=ce \(now loss=gbce\)/],
    ];
    for (const [run, message] of cases) {
      const r = await run;
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stdout, "");
      assert.equal(r.stderr.split("\n").length, 1, r.stderr);
      assert.match(r.stderr, message);
    }
    assert.deepEqual(listDir(root).filter((n) => n !== "ds"), []);
    const bad = await train("native", "ceProducts=fp16");
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /ceProducts/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test({
  name: "ceProducts=bf16: the same checkpoint bytes twice, not the float32 run's, in blocks too",
  ignore: !hasBf16,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "duaf-ce-products-" });
    try {
      const ds = await tinyDataset(root);
      const train = async (name: string, products: string, ...more: string[]) => {
        const out = join(root, name);
        const sets = setFlags([...TINY_SETS, `ceProducts=${products}`, ...more]);
        const r = await duaf([
          "train",
          ds,
          "--out",
          out,
          "--backend",
          "native",
          "--quiet",
          ...sets,
        ]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(JSON.parse(r.stdout).status, "finished");
        return await Deno.readFile(join(out, "model.safetensors"));
      };
      const a = await train("a", "bf16");
      const b = await train("b", "bf16");
      const fp32 = await train("c", "fp32");
      assert.deepEqual(a, b);
      assert.notDeepEqual(a, fp32);
      // In item blocks (streamed): reproducible too, and not the one-block run's bits (its
      // gradient comes from the logits again, not from kept exponentials).
      const blocks = await train("d", "bf16", "ceChunkItems=64");
      assert.deepEqual(await train("e", "bf16", "ceChunkItems=64"), blocks);
      assert.notDeepEqual(blocks, a);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});
