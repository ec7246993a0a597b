/**
 * Sweep grids: a JSON object of `train` config keys (dotted for DuAF-MAT's, e.g.
 * "duafmat.experts") to lists of values. The grid expands to the Cartesian product of its lists
 * (first key outermost) or to N configurations sampled from it with an explicit seeded Rng.
 * Every expanded configuration is validated with the train config schema before anything runs.
 */
import { createHash } from "node:crypto";
import { resolveConfig, type TrainConfig } from "../config.ts";
import { ID_BASELINE } from "./id_baseline.ts";
import { DataError, UsageError } from "../errors.ts";
import type { Rng } from "../random.ts";

/** Grid key -> the values it takes, in file order. */
export type Grid = [string, unknown[]][];

/** One grid point: the swept keys' values. */
export type Point = Record<string, unknown>;

/** A validated configuration of the plan. */
export interface PlannedConfig {
  /** Short hash of the canonical config without its seed. */
  configId: string;
  point: Point;
  /** The full config (seed left at its base value; each run sets its own). */
  config: TrainConfig;
}

/** One run of the plan: a configuration under one seed. */
export interface PlannedRun {
  id: string;
  configId: string;
  seed: number;
}

/** Keys the grid may not sweep: each run's seed comes from --seeds. */
const RESERVED = new Set(["seed"]);

/**
 * Reads a grid from parsed JSON. A value that is not a list is a one-value list. `file` names
 * the grid in errors.
 */
export function parseGrid(raw: unknown, file: string): Grid {
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) {
    throw new DataError(file, null, null, "expected a JSON object of config keys to value lists");
  }
  const grid: Grid = [];
  const add = (key: string, v: unknown) => {
    if (RESERVED.has(key)) {
      throw new DataError(file, null, key, "seeds come from --seeds, not from the grid");
    }
    // A scalar is one value; so is a flat list for a key whose values are lists (validKs).
    const values = !Array.isArray(v) || (isListKey(key) && !v.every(Array.isArray)) ? [v] : v;
    if (values.length === 0) throw new DataError(file, null, key, "empty list of values");
    grid.push([key, values]);
  };
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    // {"duafmat": {"experts": [2, 4]}} is the same as {"duafmat.experts": [2, 4]}.
    if (k === "duafmat" && v && typeof v === "object" && !Array.isArray(v)) {
      for (const [dk, dv] of Object.entries(v as Record<string, unknown>)) add(`duafmat.${dk}`, dv);
    } else add(k, v);
  }
  const seen = new Set<string>();
  for (const [k] of grid) {
    if (seen.has(k)) throw new DataError(file, null, k, "key given twice");
    seen.add(k);
  }
  return grid;
}

/** Keys whose values are lists themselves (validKs): a grid gives them a list of lists. */
function isListKey(key: string): boolean {
  return [
    "validKs",
    "duafmat.modalities",
    "novaAttributes",
    "difsrAttributes",
    "difsrLambdas",
    "m3srecModalities",
    "missrecModalities",
  ]
    .includes(key);
}

/** Number of configurations in the grid's Cartesian product. */
export function gridSize(grid: Grid): number {
  return grid.reduce((n, [, vs]) => n * vs.length, 1);
}

/** The index-th point of the product, the first key outermost (mixed radix). */
export function pointAt(grid: Grid, index: number): Point {
  const point: Point = {};
  let rest = index;
  for (let k = grid.length - 1; k >= 0; k--) {
    const [key, values] = grid[k];
    point[key] = values[rest % values.length];
    rest = Math.floor(rest / values.length);
  }
  // Keep the file's key order in the point.
  return Object.fromEntries(grid.map(([key]) => [key, point[key]]));
}

/** Every point of the grid, in order. */
export function expandGrid(grid: Grid): Point[] {
  const n = gridSize(grid);
  return Array.from({ length: n }, (_, i) => pointAt(grid, i));
}

/**
 * `n` distinct points drawn from the grid with `rng` (all of them, in grid order, when n covers
 * the grid). The draw is the first n positions of a seeded Fisher-Yates permutation of the point
 * indices (kept sparse, so huge grids cost O(n)): with the same seed, a larger n draws a
 * superset of a smaller one, so a random sweep can be grown. Returned in grid order.
 */
export function sampleGrid(grid: Grid, n: number, rng: Rng): Point[] {
  const total = gridSize(grid);
  if (n >= total) return expandGrid(grid);
  if (total > 0x100000000) throw new UsageError(`grid too large to sample (${total} points)`);
  const swapped = new Map<number, number>();
  const picked: number[] = [];
  for (let i = 0; i < n; i++) {
    const j = i + rng.int(total - i);
    const vi = swapped.get(i) ?? i;
    const vj = swapped.get(j) ?? j;
    swapped.set(j, vi);
    swapped.set(i, vj);
    picked.push(vj);
  }
  return picked.sort((a, b) => a - b).map((i) => pointAt(grid, i));
}

/** JSON with object keys sorted at every level: the same config always gives the same text. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v && typeof v === "object") {
    const keys = Object.keys(v as Record<string, unknown>).sort();
    return `{${
      keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`)
        .join(",")
    }}`;
  }
  return JSON.stringify(v);
}

export function shortHash(text: string, chars = 10): string {
  return createHash("sha256").update(text).digest("hex").slice(0, chars);
}

/** The config's value at a dotted key ("lr", "duafmat.experts"). */
export function valueAt(config: TrainConfig, key: string): unknown {
  const [head, tail] = key.split(".", 2);
  const top = (config as Record<string, unknown>)[head];
  return tail === undefined ? top : (top as Record<string, unknown> | undefined)?.[tail];
}

function withValue(base: Record<string, unknown>, key: string, value: unknown): void {
  if (key.startsWith("duafmat.")) {
    base.duafmat = { ...(base.duafmat as Record<string, unknown>), [key.slice(8)]: value };
  } else base[key] = value;
}

/**
 * Validates one grid point on top of the base config (defaults, --config, --set): the grid's
 * values win. Errors name the grid file and the key.
 */
export function configFor(base: TrainConfig, point: Point, file: string): TrainConfig {
  const merged = structuredClone(base) as Record<string, unknown>;
  for (const [key, value] of Object.entries(point)) withValue(merged, key, value);
  try {
    return resolveConfig(merged, [], file);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    // resolveConfig says "FILE: unknown config key 'k' (...)" or "FILE: path: problem".
    const detail = e.message.slice(file.length + 2);
    const unknown = /^unknown config key '([^']+)'/.exec(detail);
    const key = unknown?.[1] ?? detail.split(":")[0];
    throw new DataError(file, null, key, unknown ? detail : detail.slice(key.length + 2));
  }
}

/** The "key=value" slug of a point, safe as a file name. */
export function pointSlug(point: Point): string {
  const show = (v: unknown): string => Array.isArray(v) ? v.map(show).join("+") : String(v);
  const slug = Object.entries(point).map(([k, v]) => `${k.replace(/^duafmat\./, "")}=${show(v)}`)
    .join("_").replace(/[^A-Za-z0-9._=+-]/g, "-");
  return slug.length > 80 ? slug.slice(0, 80) : slug;
}

/**
 * The config's values that differ from the id baseline (nested for duafmat.*): the defaults each
 * key had when it was introduced (id_baseline.ts). Ids hash this, not the whole config, so a key
 * a later duaf version adds with its default leaves every id of an existing sweep as it was and
 * the sweep resumes across versions, while a changed default changes the ids of the runs it
 * affects. A key missing from the baseline compares with its current default.
 */
export function nonDefaults(
  config: TrainConfig,
  baseline: Readonly<Record<string, unknown>> = ID_BASELINE,
): Record<string, unknown> {
  const current = resolveConfig(null, []) as Record<string, unknown>;
  const defaults: Record<string, unknown> = { ...current, ...baseline };
  defaults.duafmat = {
    ...(current.duafmat as Record<string, unknown>),
    ...(baseline.duafmat as Record<string, unknown>),
  };
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(config)) {
    const d = defaults[k];
    if (k === "duafmat" && v && typeof v === "object") {
      const inner: Record<string, unknown> = {};
      for (const [ik, iv] of Object.entries(v)) {
        if (canonicalJson(iv) !== canonicalJson((d as Record<string, unknown>)[ik])) inner[ik] = iv;
      }
      if (Object.keys(inner).length) out[k] = inner;
    } else if (canonicalJson(v) !== canonicalJson(d)) out[k] = v;
  }
  return out;
}

export function configId(config: TrainConfig): string {
  return shortHash(canonicalJson(nonDefaults({ ...config, seed: 0 })));
}

/**
 * A run's stable id: the point's key=value slug, its seed and a short hash of the canonical
 * config with that seed (so a changed base config never reuses a run directory).
 */
export function runId(config: TrainConfig, point: Point, seed: number): string {
  const slug = pointSlug(point);
  const hash = shortHash(canonicalJson({ ...nonDefaults({ ...config, seed: 0 }), seed }), 8);
  return `${slug ? slug + "_" : ""}seed=${seed}-${hash}`;
}

/** Points -> validated configurations (deduplicated) and runs (config-major, seeds inner). */
export function planRuns(
  base: TrainConfig,
  points: Point[],
  seeds: number[],
  file: string,
): { configs: PlannedConfig[]; runs: PlannedRun[] } {
  const configs: PlannedConfig[] = [];
  const seen = new Set<string>();
  for (const point of points) {
    const config = configFor(base, point, file);
    const id = configId(config);
    if (seen.has(id)) continue;
    seen.add(id);
    configs.push({ configId: id, point, config });
  }
  const runs = configs.flatMap((c) =>
    seeds.map((seed) => ({ id: runId(c.config, c.point, seed), configId: c.configId, seed }))
  );
  return { configs, runs };
}
