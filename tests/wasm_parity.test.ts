/**
 * The wasm backend against the js reference, kernel by kernel (the shared cases of
 * helpers/backend_parity.ts). One thread: wasm_threads.test.ts shows two give the same bits.
 */
import { JsBackend } from "../core/backends/js.ts";
import { WasmBackend } from "../core/backends/wasm/wasm_backend.ts";
import { allParityCases, assertParity } from "./helpers/backend_parity.ts";

Deno.test("wasm parity with the js reference", async (t) => {
  const reference = new JsBackend();
  const wasm = await WasmBackend.create({ threads: 1 });
  for (const c of allParityCases()) {
    await t.step(c.name, () => assertParity(c, wasm, reference));
  }
});
