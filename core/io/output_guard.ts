/**
 * What duaf may overwrite. Every command that writes (preprocess, train, export, report, sweep)
 * replaces only what duaf itself wrote earlier: a directory whose manifest names an artifact of
 * the same kind and that holds nothing but that artifact's files, or a file duaf made. An absent
 * path or an empty directory is fine to fill. Anything else is refused with one line naming the
 * path, unless the user passes --force; even then the filesystem root, the home directory and the
 * working directory (or a folder above it) are never replaced.
 */
import { homedir } from "node:os";
import { join, resolve, sep } from "node:path";
import { UsageError } from "../errors.ts";
import { TEMP_PREFIX, writeFileAtomic } from "./atomic.ts";

/** A directory artifact: its manifest's `format` and the entries duaf writes into it. */
export interface DirArtifact {
  /** manifest.json's "format" value, e.g. "duaf-run". */
  format: string;
  /** What to call it in messages, e.g. "run". */
  label: string;
  /** Top-level names duaf writes there (manifest.json included); temp files are always allowed. */
  entries: readonly string[];
}

/** A file artifact: recognised from its first bytes. */
export interface FileArtifact {
  label: string;
  /** True when `head` (the file's first HEAD_BYTES bytes) is one duaf wrote. */
  recognise(head: Uint8Array): boolean;
}

const HEAD_BYTES = 4096;

/** What is at an output path before duaf writes it. */
export type OutputState = "absent" | "empty" | "artifact" | "forced";

export interface GuardOptions {
  force?: boolean;
}

function refuse(path: string, what: string): never {
  throw new UsageError(`${path}: ${what}; pass --force to replace it`);
}

/** The root, the home directory and the working directory or any folder above it. */
function neverReplaced(path: string): boolean {
  const abs = resolve(path);
  const cwd = Deno.cwd();
  const home = (() => {
    try {
      return resolve(homedir());
    } catch {
      return null;
    }
  })();
  return abs === sep || abs === home || cwd === abs || cwd.startsWith(abs + sep);
}

async function statOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.lstat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/** The `format` of dir/manifest.json, or null (no manifest, or not JSON). */
export async function manifestFormat(dir: string): Promise<string | null> {
  try {
    const raw = JSON.parse(await Deno.readTextFile(join(dir, "manifest.json")));
    return typeof raw?.format === "string" ? raw.format : null;
  } catch {
    return null;
  }
}

/**
 * Checks that directory `path` may be (re)written as `kind`; throws a UsageError otherwise.
 * Call it before the work starts (fail fast) and again right before replacing.
 */
export async function checkOutputDir(
  path: string,
  kind: DirArtifact,
  opts: GuardOptions = {},
): Promise<OutputState> {
  const info = await statOrNull(path);
  if (info === null) return "absent";
  if (neverReplaced(path)) {
    throw new UsageError(
      `${path}: is the root, the home or the working directory (or above it); choose a new folder`,
    );
  }
  if (!info.isDirectory) {
    if (opts.force) return "forced";
    refuse(path, `exists and is not a directory duaf wrote`);
  }
  const names: string[] = [];
  for await (const e of Deno.readDir(path)) names.push(e.name);
  if (names.length === 0) return "empty";
  if (opts.force) return "forced";
  const format = await manifestFormat(path);
  if (format !== kind.format) {
    refuse(path, `exists and is not a duaf ${kind.label} (no manifest.json of "${kind.format}")`);
  }
  const foreign = names.filter((n) => !kind.entries.includes(n) && !n.startsWith(TEMP_PREFIX))
    .sort();
  if (foreign.length) {
    const more = foreign.length > 1 ? ` and ${foreign.length - 1} more` : "";
    refuse(path, `holds '${foreign[0]}'${more}, which duaf did not write`);
  }
  return "artifact";
}

/** Checks that file `path` may be (re)written as `kind`; throws a UsageError otherwise. */
export async function checkOutputFile(
  path: string,
  kind: FileArtifact,
  opts: GuardOptions = {},
): Promise<OutputState> {
  const info = await statOrNull(path);
  if (info === null) return "absent";
  if (opts.force && !info.isDirectory) return "forced";
  if (!info.isFile) refuse(path, `exists and is not a file`);
  const file = await Deno.open(path, { read: true });
  try {
    const head = new Uint8Array(HEAD_BYTES);
    const n = (await file.read(head)) ?? 0;
    if (n === 0) return "empty";
    if (kind.recognise(head.subarray(0, n))) return "artifact";
  } finally {
    file.close();
  }
  refuse(path, `exists and is not a ${kind.label} duaf wrote`);
}

/** Removes what a replaced directory artifact held: only its own entries, never foreign ones. */
export async function clearDirArtifact(path: string, kind: DirArtifact): Promise<void> {
  for (const name of kind.entries) {
    await Deno.remove(join(path, name), { recursive: true }).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
  }
}

const textDecoder = new TextDecoder();

/** A file artifact recognised by a marker string within its first bytes. */
export function markedFile(label: string, marker: string): FileArtifact {
  return { label, recognise: (head) => textDecoder.decode(head).includes(marker) };
}

/** Writes a file artifact atomically, once the guard allows replacing what is at `path`. */
export async function writeOutputFile(
  path: string,
  data: Uint8Array | string,
  kind: FileArtifact,
  opts: GuardOptions = {},
): Promise<void> {
  await checkOutputFile(path, kind, opts);
  await writeFileAtomic(path, data);
}
