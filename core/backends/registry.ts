/**
 * Backend registry: factories register with a priority; `selectBackend` returns the one named
 * (flag or DUAF_BACKEND) or else the highest-priority backend that can run on this machine
 * (cuda > native > wasm > js). Why each better backend was passed over is reported, once.
 */
import type { Backend, BackendFactory } from "../backend.ts";
import { UsageError } from "../errors.ts";
import { JsBackend } from "./js.ts";
import { wasmBackendFactory } from "./wasm/wasm_backend.ts";
import { nativeBackendFactory } from "./native.ts";
import { cudaBackendFactory } from "./cuda.ts";

const factories = new Map<string, BackendFactory>();

export function registerBackend(factory: BackendFactory): void {
  factories.set(factory.name, factory);
}

export function registeredBackends(): string[] {
  return [...factories.values()].sort((a, b) => b.priority - a.priority).map((f) => f.name);
}

registerBackend({
  name: "js",
  priority: 0,
  create: () => Promise.resolve(new JsBackend()),
});
registerBackend(wasmBackendFactory);
registerBackend(nativeBackendFactory);
registerBackend(cudaBackendFactory);

export interface Selection {
  backend: Backend;
  /** Human-readable reasons higher-priority backends were skipped. */
  skipped: string[];
}

/**
 * Picks a backend. `requested` (a flag value) wins over DUAF_BACKEND; "auto" or nothing means
 * best available. A named backend that cannot run is an error, not a silent fallback.
 */
export async function selectBackend(requested?: string): Promise<Selection> {
  const name = requested ?? Deno.env.get("DUAF_BACKEND") ?? "auto";
  if (name !== "auto") {
    const factory = factories.get(name);
    if (!factory) {
      throw new UsageError(
        `unknown backend '${name}' (available: ${registeredBackends().join(", ")})`,
      );
    }
    const made = await factory.create();
    if ("unavailable" in made) {
      throw new UsageError(`backend '${name}' unavailable: ${made.unavailable}`);
    }
    return { backend: made, skipped: [] };
  }
  const skipped: string[] = [];
  for (const factory of [...factories.values()].sort((a, b) => b.priority - a.priority)) {
    const made = await factory.create();
    if ("unavailable" in made) {
      skipped.push(`${factory.name}: ${made.unavailable}`);
      continue;
    }
    return { backend: made, skipped };
  }
  throw new Error("no backend available (the js backend should always be)");
}
