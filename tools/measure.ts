/**
 * What the benchmark tools share. They run each measured case in a child Deno process of its
 * own, so its peak memory and any failure are its own: the child prints progress on stderr
 * (passed through, and kept to name a failure) and its result as the last line of stdout, in
 * JSON. Their records name the machine's CPU model.
 */
import os from "node:os";

/** The middle value of xs (the upper one of an even count). */
export const median = (xs: readonly number[]): number =>
  [...xs].sort((a, b) => a - b)[xs.length >> 1];

/** Median ms of each runner over `rounds` rounds, the runners taking turns within a round. */
export function medianMs(runners: readonly (() => void)[], rounds: number): number[] {
  const ms: number[][] = runners.map(() => []);
  for (let r = 0; r < rounds; r++) {
    runners.forEach((run, i) => {
      const t = performance.now();
      run();
      ms[i].push(performance.now() - t);
    });
  }
  return ms.map(median);
}

/** The CPU model, from lscpu where it exists, else from node:os. */
export function cpuModel(): string {
  try {
    const out = new Deno.Command("lscpu", { stdout: "piped", stderr: "null" }).outputSync();
    const m = /Model name:\s*(.+)/.exec(new TextDecoder().decode(out.stdout));
    if (m) return m[1].trim();
  } catch {
    // no lscpu
  }
  return os.cpus()[0]?.model ?? "unknown CPU";
}

/** The child's parsed result, or why there is none: its first error line, or its exit code. */
export async function runChildJson<T>(
  args: string[],
): Promise<{ r: T | { ok: false; error: string }; wall: number }> {
  const t0 = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--v8-flags=--no-liftoff", ...args],
    // Plain error lines (no colour escapes) to quote in tables.
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = new Response(child.stdout).text();
  let err = "";
  for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
    Deno.stderr.writeSync(new TextEncoder().encode(chunk));
    err += chunk;
  }
  const status = await child.status;
  const wall = (performance.now() - t0) / 1000;
  const lines = (await stdout).trim().split("\n");
  if (status.success) {
    try {
      return { r: JSON.parse(lines[lines.length - 1]) as T, wall };
    } catch {
      // falls through to the failure below
    }
  }
  const first = /^(?:error|duaf \w+): (.+)$/m.exec(err)?.[1] ?? `exit code ${status.code}`;
  return { r: { ok: false, error: first.replace(/^Uncaught \(in promise\) /, "") }, wall };
}
