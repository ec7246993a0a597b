/**
 * Builds the kernel modules from wasm/assembly/ (AssemblyScript) with pinned compiler flags:
 *
 *   deno task build:wasm            writes wasm/build/kernels-relaxed.wasm and kernels-simd.wasm
 *   deno task build:wasm --check    builds into a temp dir; exits 1 if the bytes differ from the
 *                                   committed ones (CI: the committed binaries match the sources)
 *
 * The built files are committed so users never need the compiler. wasm/assembly/ is excluded from
 * `deno fmt` and `deno lint`: it is AssemblyScript, whose `@inline` decorators deno fmt would strip.
 */
import asc from "assemblyscript/asc";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("./", import.meta.url));
const ENTRY = join(ROOT, "assembly", "index.ts");
const OUT_DIR = join(ROOT, "build");

/** Flags shared by both variants. Changing any of them changes the committed bytes. */
const COMMON_FLAGS = [
  "-O3",
  "--runtime",
  "stub", // no GC: kernels only see pointers handed to them
  "--noAssert",
  "--use",
  "abort=", // no abort import, no message strings
  "--importMemory", // env.memory: the tensor arena, shared with the worker thread
  "--noExportMemory",
  "--sharedMemory",
  "--initialMemory",
  "1",
  "--maximumMemory",
  "65536",
  "--enable",
  "simd",
  "--enable",
  "threads",
  "--disableWarning",
  "112", // v128 in signatures of internal helpers; the exports take only numbers
];

export const VARIANTS = {
  relaxed: ["--enable", "relaxed-simd"],
  simd: [],
} as const;

export type Variant = keyof typeof VARIANTS;

async function compile(variant: Variant, outFile: string): Promise<void> {
  const args = [ENTRY, "-o", outFile, ...COMMON_FLAGS, ...VARIANTS[variant]];
  const { error, stderr } = await asc.main(args);
  if (error) {
    console.error(stderr.toString());
    throw new Error(`asc failed for ${variant}: ${error.message}`);
  }
}

/** The built module must validate, import only the shared memory, and instantiate in Deno. */
async function verify(variant: Variant, bytes: Uint8Array<ArrayBuffer>): Promise<void> {
  if (!WebAssembly.validate(bytes)) throw new Error(`${variant}: module does not validate`);
  const module = await WebAssembly.compile(bytes);
  const imports = WebAssembly.Module.imports(module);
  if (imports.length !== 1 || imports[0].name !== "memory" || imports[0].kind !== "memory") {
    throw new Error(`${variant}: unexpected imports ${JSON.stringify(imports)}`);
  }
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true });
  await WebAssembly.instantiate(module, { env: { memory } });
}

async function main(): Promise<void> {
  const check = Deno.args.includes("--check");
  const dir = check ? await Deno.makeTempDir({ prefix: "duaf-wasm-" }) : OUT_DIR;
  await Deno.mkdir(dir, { recursive: true });
  let stale = false;
  try {
    for (const variant of Object.keys(VARIANTS) as Variant[]) {
      const file = join(dir, `kernels-${variant}.wasm`);
      await compile(variant, file);
      const bytes = await Deno.readFile(file);
      await verify(variant, bytes);
      if (check) {
        const committed = await Deno.readFile(join(OUT_DIR, `kernels-${variant}.wasm`)).catch(
          () => new Uint8Array(),
        );
        const same = committed.length === bytes.length && committed.every((b, i) => b === bytes[i]);
        console.log(`kernels-${variant}.wasm: ${same ? "up to date" : "DIFFERS from the sources"}`);
        stale ||= !same;
      } else {
        console.log(`wrote ${file} (${bytes.length} bytes)`);
      }
    }
  } finally {
    if (check) await Deno.remove(dir, { recursive: true });
  }
  if (stale) {
    console.error("run `deno task build:wasm` and commit wasm/build/");
    Deno.exit(1);
  }
}

if (import.meta.main) await main();
