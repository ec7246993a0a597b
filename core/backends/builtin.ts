/**
 * Registers the backends that ship with duaf. Kept apart from registry.ts so the registry stays
 * free of FFI and WebAssembly imports for library users who register their own.
 */
import { registerBackend } from "./registry.ts";
import { cudaBackendFactory } from "./cuda.ts";
import { nativeBackendFactory } from "./native.ts";
import { wasmBackendFactory } from "./wasm/wasm_backend.ts";

registerBackend(wasmBackendFactory);
registerBackend(nativeBackendFactory);
registerBackend(cudaBackendFactory);
