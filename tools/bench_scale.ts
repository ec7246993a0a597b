/**
 * One SASRec training step against large item catalogs, CE over all items on its materialised
 * logits ("plain") against CE in item blocks (op.linearCrossEntropy, "chunked") and the sampled
 * losses ("gbce", "sampled", over --negatives uniform negatives per position): seconds per step
 * and the wasm arena's peak bytes in use during a step. Synthetic data (random histories over the
 * catalog); the default model config (d = 64, 2 layers); one micro-batch of --rows sequences.
 *
 *   deno task bench scale [--items 12000,120000] [--rows 2048] [--len 20] [--steps 3]
 *                         [--backend native|wasm] [--threads 1|2] [--ce-only]
 *                         [--paths plain,chunked,gbce,sampled] [--negatives 256]
 *
 * --ce-only times the loss alone (forward and backward of the CE over the item table, from random
 * sequence outputs [rows, 64]), without the encoder's share of the step.
 *
 * Each (catalog, path) runs in a child process of its own, so every peak starts from a clean
 * arena and an out-of-memory failure ends only that case (it is reported as such).
 */
import { parseArgs } from "node:util";
import { NativeBackend } from "../core/backends/native.ts";
import { WasmBackend } from "../core/backends/wasm/wasm_backend.ts";
import { TrainConfigSchema } from "../core/config.ts";
import { lossPositions, type SequenceBatch } from "../core/models/batch.ts";
import { negativeSampler, nextItemLoss, Sasrec } from "../core/models/sasrec.ts";
import { budgetBlockItems } from "../core/ops/linear_ce.ts";
import { Adam } from "../core/optim/adam.ts";
import { Rng } from "../core/random.ts";
import { backward, setBackend, tensor, tidy } from "../core/tensor.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    items: { type: "string", default: "12000,120000" },
    rows: { type: "string", default: "2048" },
    len: { type: "string", default: "20" },
    steps: { type: "string", default: "3" },
    backend: { type: "string", default: "native" },
    threads: { type: "string", default: "1" },
    "ce-only": { type: "boolean", default: false },
    paths: { type: "string", default: "plain,chunked,gbce" },
    negatives: { type: "string", default: "256" },
    one: { type: "string" },
  },
});
const rows = Number(values.rows);
const len = Number(values.len);
const steps = Number(values.steps);
const threads = Number(values.threads) as 1 | 2;

function syntheticBatch(rng: Rng, numItems: number): SequenceBatch {
  const items = new Int32Array(rows * len);
  const lengths = new Int32Array(rows);
  const targets = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    lengths[r] = 1 + rng.int(len);
    for (let i = 0; i < lengths[r]; i++) items[r * len + i] = 1 + rng.int(numItems);
    targets[r] = 1 + rng.int(numItems);
  }
  return {
    size: rows,
    len,
    items,
    lengths,
    times: new Float32Array(rows * len),
    users: Int32Array.from({ length: rows }, (_, i) => i),
    targets,
  };
}

/** Child: one catalog size and one CE path; prints one JSON line. */
async function runOne(numItems: number, path: string): Promise<void> {
  const chunked = path === "chunked";
  const loss = path === "gbce" || path === "sampled" ? path : "ce";
  const be = values.backend === "wasm"
    ? await WasmBackend.create({ threads })
    : await NativeBackend.open({ threads });
  if ("unavailable" in be) throw new Error(be.unavailable);
  setBackend(be);
  // Chunked: the block "auto" takes above its plain limit, here at every catalog size.
  const block = chunked ? budgetBlockItems(rows, numItems + 1) : 0;
  const cfg = TrainConfigSchema.parse({
    ceChunkItems: block,
    loss,
    negatives: Number(values.negatives),
  });
  const rng = new Rng(1);
  const model = new Sasrec({ ...cfg, numItems, maxLen: len }, rng);
  const opt = new Adam(model.parameters(), { lr: 1e-3, weightDecay: 0 });
  const batch = syntheticBatch(rng, numItems);
  const ctx = { training: true, rng };
  const h = tensor(Float32Array.from({ length: rows * cfg.hidden }, () => rng.normal()), [
    rows,
    cfg.hidden,
  ]);
  h.requiresGrad = true;
  const lossOf = values["ce-only"]
    ? () =>
      nextItemLoss(
        h,
        model.itemEmbedding.weight,
        lossPositions(batch),
        cfg.loss,
        cfg.ceChunkItems,
        negativeSampler(cfg, ctx),
      )
    : () => model.loss(batch, ctx).total;
  const times: number[] = [];
  let peak = 0;
  for (let s = 0; s <= steps; s++) {
    be.resetPeak();
    const t0 = performance.now();
    tidy(() => {
      backward(lossOf(), undefined, { release: true });
    });
    tidy(() => {
      opt.step();
      opt.zeroGrad();
    });
    h.grad?.dispose();
    h.grad = null;
    be.sync();
    if (s > 0) times.push((performance.now() - t0) / 1000); // step 0 warms up
    peak = Math.max(peak, be.memoryStats().peak);
  }
  times.sort((a, b) => a - b);
  console.log(JSON.stringify({ ok: true, seconds: times[times.length >> 1], peak, block }));
}

async function main(): Promise<void> {
  if (values.one) {
    const [n, path] = values.one.split(":");
    try {
      await runOne(Number(n), path);
    } catch (e) {
      console.log(JSON.stringify({ ok: false, error: e instanceof Error ? e.message : String(e) }));
    }
    return;
  }
  const sizes = values.items!.split(",").map(Number);
  console.log(
    `${values["ce-only"] ? "CE alone, forward + backward" : "SASRec step"} (d=64, 2 layers), ` +
      `${rows} sequences x ${len}, backend ${values.backend}, ` +
      `${threads} thread(s), median of ${steps} steps after one warm-up`,
  );
  console.log("| items | loss | seconds / step | peak arena MiB | plain logits MiB |");
  console.log("|---|---|---|---|---|");
  // Blocks of budgetBlockItems(rows, items): a [rows x B] scratch within 32 MiB.
  for (const n of sizes) {
    for (const path of values.paths!.split(",")) {
      const args = [
        "run",
        "-A",
        "--v8-flags=--no-liftoff",
        new URL(import.meta.url).pathname,
        ...Deno.args,
        "--one",
        `${n}:${path}`,
      ];
      const out = await new Deno.Command(Deno.execPath(), { args, stderr: "inherit" }).output();
      const line = new TextDecoder().decode(out.stdout).trim().split("\n").pop() ?? "{}";
      const r = JSON.parse(line) as {
        ok: boolean;
        seconds?: number;
        peak?: number;
        block?: number;
        error?: string;
      };
      const logits = (rows * (n + 1) * 4 / 2 ** 20).toFixed(0);
      console.log(
        r.ok
          ? `| ${n} | ${path}${r.block ? ` (blocks of ${r.block})` : ""}${
            path === "gbce" || path === "sampled" ? ` (${values.negatives} negatives)` : ""
          } | ${r.seconds!.toFixed(2)} | ${(r.peak! / 2 ** 20).toFixed(0)} | ${logits} |`
          : `| ${n} | ${path} | failed: ${r.error} | | ${logits} |`,
      );
    }
  }
}

await main();
