/** Moving parameter values between modules and host maps (checkpoints, golden fixtures). */
import { assign } from "../tensor.ts";
import type { Module } from "./module.ts";

/** Host copies of every parameter by name. */
export function stateDict(m: Module): Map<string, { shape: number[]; data: Float32Array }> {
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, t] of m.namedParameters()) {
    out.set(name, { shape: [...t.shape], data: t.toFloat32() });
  }
  return out;
}

/**
 * Loads parameter values by name. Every parameter must be present with the same size unless
 * `strict` is false; returns the names that were missing.
 */
export function loadStateDict(
  m: Module,
  values: ReadonlyMap<string, { shape: readonly number[]; data: Float32Array }>,
  strict = true,
): string[] {
  const missing: string[] = [];
  for (const [name, t] of m.namedParameters()) {
    const v = values.get(name);
    if (!v) {
      missing.push(name);
      continue;
    }
    if (v.data.length !== t.size) {
      throw new Error(`parameter ${name}: expected [${t.shape}], got [${v.shape}]`);
    }
    assign(t, v.data);
  }
  if (strict && missing.length) throw new Error(`missing parameters: ${missing.join(", ")}`);
  return missing;
}
