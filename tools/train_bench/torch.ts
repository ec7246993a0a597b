/**
 * The PyTorch peer of `deno task bench train`: RecBole-default SASRec (tools/torch/sasrec_train.py)
 * on the same reviews, in its own process, with its JSON-lines events parsed into the numbers the
 * table needs. Its epoch time, like ours, leaves out the first step when extrapolating.
 */

const SCRIPT = new URL("../torch/sasrec_train.py", import.meta.url).pathname;
export const PYTHON = "/usr/bin/python3";

export interface TorchResult {
  torch: string;
  threads: number;
  items: number;
  trainExamples: number;
  stepsPerEpoch: number;
  steps: number;
  epochSeconds: number;
  extrapolated: boolean;
  evalTestSeconds: number;
  evalUsers: number;
  peakRssMb: number;
}

export async function runTorchSasrec(
  reviews: string,
  opts: { threads: number; steps: number; batch: number; hidden: number; maxLen: number },
): Promise<TorchResult | { skipped: string }> {
  const args = [
    SCRIPT,
    "--reviews",
    reviews,
    "--threads",
    String(opts.threads),
    "--epochs",
    "1",
    "--eval",
    "--batch-size",
    String(opts.batch),
    "--hidden-size",
    String(opts.hidden),
    "--max-seq-length",
    String(opts.maxLen),
    ...(opts.steps > 0 ? ["--max-steps", String(opts.steps)] : []),
  ];
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(PYTHON, { args, stdout: "piped", stderr: "inherit" }).output();
  } catch (e) {
    return { skipped: `cannot run ${PYTHON}: ${e instanceof Error ? e.message : e}` };
  }
  const events = new Map<string, Record<string, unknown>>();
  for (const line of new TextDecoder().decode(out.stdout).split("\n")) {
    if (!line.trim()) continue;
    const rec = JSON.parse(line);
    events.set(rec.event, rec);
  }
  if (events.has("skipped")) return { skipped: String(events.get("skipped")!.reason) };
  if (!out.success) return { skipped: `sasrec_train.py failed (exit ${out.code})` };
  const data = events.get("data")!;
  const epoch = (events.get("partial") ?? events.get("epoch"))!;
  const test = events.get("test")!;
  const extrapolated = epoch.event === "partial";
  return {
    torch: String(epoch.torch),
    threads: Number(epoch.threads),
    items: Number(data.items),
    trainExamples: Number(data.train_examples),
    stepsPerEpoch: Math.ceil(Number(data.train_examples) / opts.batch),
    steps: Number(epoch.steps),
    epochSeconds: Number(extrapolated ? epoch.epoch_seconds_extrapolated : epoch.seconds),
    extrapolated,
    evalTestSeconds: Number(test.seconds),
    evalUsers: Number(test.users),
    peakRssMb: Number(events.get("done")!.peak_rss_mb),
  };
}
