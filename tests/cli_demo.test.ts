// `duaf demo --data movielens`: the image modality from a fresh clone, on the bundled MovieLens
// subset and its posters' derived features: DuAF-MAT trains on ID + text + image and explains
// recommendations with three modality weights.
import assert from "node:assert/strict";
import { MAIN_TS } from "./helpers/tiny_run.ts";

Deno.test("demo --data movielens: three modalities end to end", async () => {
  const out = await Deno.makeTempDir({ prefix: "duaf-demo-" });
  try {
    // A child process: recommend writes its lines straight to stdout.
    const child = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN_TS, "demo", "--data", "movielens", "--epochs", "1", "--out", out],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const r = {
      code: child.code,
      stdout: new TextDecoder().decode(child.stdout),
      stderr: new TextDecoder().decode(child.stderr),
    };
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
    const pre = lines.find((l) => l.coverage);
    assert.ok(pre.coverage.image > 0.9, JSON.stringify(pre.coverage));
    const evals = lines.filter((l) => l.metrics);
    assert.deepEqual(evals.map((e) => e.model), ["sasrec", "duafmat"]);
    const explained = lines.filter((l) => l.weights);
    assert.equal(explained.length, 2, r.stdout.slice(0, 400));
    const weights = explained[0].weights[0];
    assert.deepEqual(Object.keys(weights).sort(), ["id", "image", "text"]);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
