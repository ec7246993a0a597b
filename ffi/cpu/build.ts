/**
 * Builds the native CPU kernels (kernels.c) with the host C compiler, once per source, flags and
 * CPU: the library is named by a hash of the three in ffi/cpu/build/, so an edited source, a
 * changed flag or a checkout shared by another machine builds anew instead of loading a stale or
 * foreign library. -march=native is the point (the host's full vector width), which is also why
 * the library is built where it runs rather than shipped.
 *
 *   deno task build:cpu [--fused | --unfused] [--force]
 */
import { parseArgs } from "node:util";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import os from "node:os";
import { compileInto } from "../compile.ts";

const HERE = dirname(fileURLToPath(import.meta.url));
export const SOURCE = join(HERE, "kernels.c");
export const BUILD_DIR = join(HERE, "build");

/**
 * Compiler flags. -ffp-contract=off: no multiply-add is fused unless the source says so (the wasm
 * kernels round each one separately); -fno-trapping-math lets the compiler compute both sides of
 * a select, which vectorizes the loops with special-value handling and changes no result.
 * -mprefer-vector-width=512: GCC vectorizes loops at 256 bits on AVX-512 CPUs unless told; the
 * GELU in the products' stores and the elementwise loops gain at 512 (each lane's arithmetic is
 * the same, so are the bits; no effect without AVX-512).
 */
export function cpuKernelFlags(fused: boolean, native = true): string[] {
  return [
    "-O3",
    ...(native ? ["-march=native", "-mprefer-vector-width=512"] : []),
    "-ffp-contract=off",
    "-fno-math-errno",
    "-fno-trapping-math",
    `-DDUAF_FUSED_MADD=${fused ? 1 : 0}`,
    "-shared",
    "-fPIC",
    "-Wall",
  ];
}

/** What identifies the host's instruction set: the CPU's model and feature flags. */
async function cpuIdentity(): Promise<string> {
  try {
    const info = await Deno.readTextFile("/proc/cpuinfo");
    const model = /^model name\s*:\s*(.*)$/m.exec(info)?.[1] ?? "";
    const flags = /^(?:flags|Features)\s*:\s*(.*)$/m.exec(info)?.[1] ?? "";
    return `${model}|${flags}`;
  } catch {
    return `${os.cpus()[0]?.model ?? "unknown"}|${Deno.build.target}`;
  }
}

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

export interface CpuBuildOptions {
  /** Fused multiply-add in the polynomials (to match the relaxed-SIMD wasm build). */
  fused: boolean;
  /** C compiler (default $CC, else cc). */
  cc?: string;
  /** Where the library goes (default ffi/cpu/build). */
  dir?: string;
  /** Rebuild even when the library exists. */
  force?: boolean;
  /** No progress lines on stderr. */
  quiet?: boolean;
}

/** Path of the library for these options, building it first when it is not there. */
export async function buildCpuKernels(opts: CpuBuildOptions): Promise<string> {
  let source: string;
  try {
    source = await Deno.readTextFile(SOURCE);
  } catch (e) {
    throw new Error(`kernel source ${SOURCE} not readable (${(e as Error).message})`);
  }
  const cc = opts.cc ?? (Deno.env.get("CC") || "cc");
  const dir = opts.dir ?? BUILD_DIR;
  // -march=native needs a compiler that knows the host; a retry without it still vectorizes
  // for the baseline instruction set.
  for (const native of [true, false]) {
    const flags = cpuKernelFlags(opts.fused, native);
    const key = (await sha256Hex([source, cc, flags.join(" "), await cpuIdentity()].join("\n")))
      .slice(0, 16);
    const out = join(dir, `libduaf_cpu-${key}.so`);
    if (!opts.force && isFile(out)) return out;
    await Deno.mkdir(dir, { recursive: true });
    const tmp = `${out}.${Deno.pid}.tmp`;
    const t0 = performance.now();
    try {
      await compileInto(cc, [...flags, "-o", tmp, SOURCE, "-lm"], tmp, out, { quiet: true });
    } catch (e) {
      if (native) continue;
      throw e;
    }
    if (!opts.quiet) {
      const s = ((performance.now() - t0) / 1000).toFixed(1);
      console.error(`build:cpu: wrote ${out} in ${s} s (${cc} ${flags.join(" ")})`);
    }
    return out;
  }
  throw new Error("unreachable");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      force: { type: "boolean", default: false },
      unfused: { type: "boolean", default: false },
    },
  });
  try {
    const out = await buildCpuKernels({ fused: !values.unfused, force: values.force });
    console.log(out);
  } catch (e) {
    console.error(`build:cpu: ${e instanceof Error ? e.message : e}`);
    Deno.exit(1);
  }
}
