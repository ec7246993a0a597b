// Images hidden from training (duafmat.hideImages) never reach the model, and the run reports how
// well MAT-MoE rebuilds them against the real ones, beside the mean and text-neighbour baselines.
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadDataset } from "../core/data/dataset.ts";
import { readSafetensors } from "../core/io/safetensors.ts";
import { hideImages } from "../core/models/duaf/hidden_images.ts";
import { Rng } from "../core/random.ts";
import { runCli } from "./helpers/run_cli.ts";
import { TINY_SETS, tinyDataset, tinyImageDataset, tinyTrain } from "./helpers/tiny_run.ts";

const SETS = [...TINY_SETS, "model=duafmat", "duafmat.hideImages=0.3"];

Deno.test("hideImages: hidden images never reach training; recon.* cosines are reported", async () => {
  const root = await Deno.makeTempDir({ prefix: "duaf-hidden-" });
  try {
    const ds = await tinyImageDataset(root);
    const data = await loadDataset(ds);
    const image = data.image!;
    const present = image.mask.reduce((a, b) => a + b, 0);
    const { items } = hideImages(image, 0.3);
    assert.equal(items.length, Math.round(0.3 * present));
    assert.ok(items.every((i) => image.mask[i] === 1));

    // The same dataset with other vectors for exactly the hidden items.
    const rng = new Rng(11);
    const hidden = new Set(items);
    const lines = data.itemIds().slice(1).flatMap((id, k) => {
      const i = k + 1;
      if (!image.mask[i]) return [];
      const row = Array.from(image.data.subarray(i * image.dim, (i + 1) * image.dim));
      const vector = hidden.has(i) ? row.map(() => rng.normal()) : row;
      return [JSON.stringify({ id, vector })];
    });
    const other = join(root, "other.jsonl");
    await Deno.writeTextFile(other, lines.join("\n") + "\n");
    const ds2 = await tinyDataset(root, ["--image-features", other, "--text-dim", "16"], "ds2");

    const a = await tinyTrain(ds, join(root, "a"), SETS);
    const b = await tinyTrain(ds2, join(root, "b"), SETS);
    // Parameters, not file bytes: the file's metadata names the dataset, which differs.
    const params = async (run: string) =>
      (await readSafetensors(join(root, run, "model.safetensors"))).tensors;
    const pa = await params("a");
    const pb = await params("b");
    const differ = [...pa].filter(([name, t]) => {
      const u = pb.get(name)!.data;
      return t.data.length !== u.length || t.data.some((v, i) => v !== u[i]);
    }).map(([name]) => name);
    assert.deepEqual(differ, [], "hidden features leaked into training");

    const test = a.test as Record<string, number>;
    assert.equal(test["recon.items"], items.length);
    for (const k of ["recon.filled", "recon.meanOfVisible", "recon.textNeighbour"]) {
      assert.ok(Math.abs(test[k]) <= 1 && test[k] !== 0, `${k} = ${test[k]}`);
    }
    // The real vectors differ between a and b, so the measured cosines must too.
    assert.notEqual((b.test as Record<string, number>)["recon.filled"], test["recon.filled"]);

    // On the backend that trained it (tinyTrain's wasm): the same cosines, bit for bit.
    const e = await runCli([
      "eval",
      join(root, "a"),
      "--reconstruction",
      "--backend",
      "wasm",
      "--quiet",
    ]);
    assert.equal(e.code, 0, e.stderr);
    const recon = JSON.parse(e.stdout).reconstruction;
    assert.equal(recon["recon.filled"], test["recon.filled"]);

    const none = await tinyTrain(ds, join(root, "none"), [...TINY_SETS, "model=duafmat"]);
    assert.equal((none.test as Record<string, number>)["recon.items"], undefined);
    const refused = await runCli(["eval", join(root, "none"), "--reconstruction", "--quiet"]);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /hid no images from training/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
