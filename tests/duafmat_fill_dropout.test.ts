// fillDropout: with MAT-MoE off, train-time modality dropout gives dropped images the fill's row;
// off, the −MAT_MoE ablation trains as it always has (its fills only stand in for missing images).
import assert from "node:assert/strict";
import { join } from "node:path";
import { TINY_SETS, tinyImageDataset, tinyTrain } from "./helpers/tiny_run.ts";

Deno.test("fillDropout: dropped images take the fill; without dropout or the key, nothing changes", async () => {
  const root = await Deno.makeTempDir({ prefix: "duaf-fill-dropout-" });
  try {
    const ds = await tinyImageDataset(root);
    const base = [...TINY_SETS, "model=duafmat", "duafmat.matMoe=false"];
    const bytes = (run: string) => Deno.readFile(join(root, run, "model.safetensors"));
    for (const fill of ["zero", "random", "mean"]) {
      const sets = [...base, `duafmat.missingFill=${fill}`];
      await tinyTrain(ds, join(root, `${fill}-off`), sets);
      await tinyTrain(ds, join(root, `${fill}-on`), [...sets, "duafmat.fillDropout=true"]);
      await tinyTrain(ds, join(root, `${fill}-on-0`), [
        ...sets,
        "duafmat.fillDropout=true",
        "duafmat.modalityDropout=0",
      ]);
      await tinyTrain(ds, join(root, `${fill}-off-0`), [...sets, "duafmat.modalityDropout=0"]);
      // Without the key the dropout rate does nothing to a fill, as before the key existed.
      assert.deepEqual(await bytes(`${fill}-off`), await bytes(`${fill}-off-0`), fill);
      // With it at rate 0, nothing is dropped: the same run.
      assert.deepEqual(await bytes(`${fill}-on-0`), await bytes(`${fill}-off`), fill);
      // With it at 0.6, training sees dropped images and ends elsewhere.
      assert.notDeepEqual(await bytes(`${fill}-on`), await bytes(`${fill}-off`), fill);
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
