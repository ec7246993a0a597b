/**
 * Builds ffi/cuda/build/libduaf_cuda.so with nvcc (`deno task build:cuda`).
 *
 * Needs only nvcc and cudart: cuBLAS is opened at run time (see shim.cu). cudart is linked
 * statically so the library needs nothing at run time but the driver (libcuda.so.1).
 *
 * Targets: SASS for sm_90 (H100/H200) plus compute_80 PTX, which the driver JIT-compiles on any
 * newer GPU (Ampere, Ada, Blackwell). Override with DUAF_CUDA_ARCH="sm_90,sm_89" (SASS per entry,
 * PTX of the lowest) or --arch. Skips the build when the library is newer than its sources,
 * unless --force.
 *
 *   deno task build:cuda [--force] [--arch sm_90,sm_80] [--nvcc /path/to/nvcc]
 *   deno task build:cuda --null     # the no-op stand-in for host-side timing (c++, no CUDA)
 */
import { parseArgs } from "node:util";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { compileInto } from "../compile.ts";

const HERE = dirname(fileURLToPath(import.meta.url));
export const SOURCES = ["shim.cu", "duaf_cuda.h", "block_pool.h"].map((f) => join(HERE, f));
export const OUTPUT = join(HERE, "build", "libduaf_cuda.so");
const DEFAULT_ARCHS = ["sm_90"];
const PTX_ARCH = "80";

function findNvcc(explicit?: string): string | null {
  const candidates = [
    explicit,
    Deno.env.get("NVCC"),
    Deno.env.get("CUDA_HOME") && join(Deno.env.get("CUDA_HOME")!, "bin", "nvcc"),
    "/usr/local/cuda/bin/nvcc",
  ];
  for (const c of candidates) {
    if (c && exists(c)) return c;
  }
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (dir && exists(join(dir, "nvcc"))) return join(dir, "nvcc");
  }
  return null;
}

function exists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

function mtime(path: string): number {
  try {
    return Deno.statSync(path).mtime?.getTime() ?? 0;
  } catch {
    return 0;
  }
}

/** nvcc -gencode flags: SASS for each sm_XY, PTX for the lowest of them and compute_80. */
export function gencodeFlags(archs: readonly string[]): string[] {
  const nums = archs.map((a) => {
    const m = /^(?:sm_|compute_)?(\d+[a-z]?)$/.exec(a.trim());
    if (!m) throw new Error(`bad CUDA arch '${a}' (expected like sm_90)`);
    return m[1];
  });
  const flags = nums.flatMap((n) => ["-gencode", `arch=compute_${n},code=sm_${n}`]);
  const lowest = [...nums, PTX_ARCH].map((n) => parseInt(n)).sort((a, b) => a - b)[0];
  flags.push("-gencode", `arch=compute_${lowest},code=compute_${lowest}`);
  return flags;
}

export async function buildCuda(
  opts: { force?: boolean; archs?: string[]; nvcc?: string; quiet?: boolean } = {},
): Promise<string> {
  const nvcc = findNvcc(opts.nvcc);
  if (!nvcc) throw new Error("nvcc not found (set NVCC or CUDA_HOME, or put nvcc on PATH)");
  const newest = Math.max(...SOURCES.map(mtime));
  if (!opts.force && mtime(OUTPUT) > newest) {
    if (!opts.quiet) console.error(`build:cuda: ${OUTPUT} is up to date`);
    return OUTPUT;
  }
  await Deno.mkdir(dirname(OUTPUT), { recursive: true });
  const archs = opts.archs ??
    (Deno.env.get("DUAF_CUDA_ARCH")?.split(",").filter((s) => s) || DEFAULT_ARCHS);
  const tmp = `${OUTPUT}.tmp`;
  const args = [
    "-O3",
    "-std=c++17",
    "-shared",
    "-Xcompiler",
    "-fPIC,-Wall",
    "--cudart=static",
    ...gencodeFlags(archs),
    "-o",
    tmp,
    join(HERE, "shim.cu"),
  ];
  if (!opts.quiet) console.error(`build:cuda: ${nvcc} ${args.join(" ")}`);
  const t0 = performance.now();
  await compileInto(nvcc, args, tmp, OUTPUT);
  if (!opts.quiet) {
    console.error(
      `build:cuda: wrote ${OUTPUT} in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
  }
  return OUTPUT;
}

export const NULL_SOURCES = ["null_shim.cc", "duaf_cuda.h", "block_pool.h"].map((f) =>
  join(HERE, f)
);
export const NULL_OUTPUT = join(HERE, "build", "libduaf_null.so");

/**
 * Builds the no-op stand-in (null_shim.cc) with the host C++ compiler ($CXX, else c++): the cuda
 * backend's host side runs on it without a GPU, for timing and for tests of the FFI binding.
 * Warnings are errors, so a header change the stand-in does not follow fails here.
 */
export async function buildNullShim(
  opts: { force?: boolean; out?: string; quiet?: boolean } = {},
): Promise<string> {
  const out = opts.out ?? NULL_OUTPUT;
  const newest = Math.max(...NULL_SOURCES.map(mtime));
  if (!opts.force && mtime(out) > newest) return out;
  await Deno.mkdir(dirname(out), { recursive: true });
  const cxx = Deno.env.get("CXX") || "c++";
  const tmp = `${out}.tmp`;
  const args = [
    "-std=c++17",
    "-O2",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-shared",
    "-fPIC",
    "-o",
    tmp,
    NULL_SOURCES[0],
  ];
  await compileInto(cxx, args, tmp, out);
  if (!opts.quiet) console.error(`build:cuda: wrote ${out}`);
  return out;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      force: { type: "boolean", default: false },
      arch: { type: "string" },
      nvcc: { type: "string" },
      null: { type: "boolean", default: false },
    },
  });
  try {
    if (values.null) await buildNullShim({ force: values.force });
    else {
      await buildCuda({
        force: values.force,
        archs: values.arch?.split(",").filter((s) => s),
        nvcc: values.nvcc,
      });
    }
  } catch (e) {
    console.error(`build:cuda: ${e instanceof Error ? e.message : e}`);
    Deno.exit(1);
  }
}
