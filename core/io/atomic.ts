/**
 * Atomic output: everything duaf writes goes to a temporary sibling first and is renamed into
 * place, so an interrupted or failed run never leaves a half-written file or directory.
 */
import { basename, dirname, join } from "node:path";
import { isDiskFull, ResourceError } from "../errors.ts";

/** Names of duaf's temporary files and directories start with this. */
export const TEMP_PREFIX = ".duaf-tmp-";

function tempSibling(path: string): string {
  const rand = crypto.getRandomValues(new Uint32Array(1))[0].toString(16);
  return join(dirname(path), `${TEMP_PREFIX}${basename(path)}-${Deno.pid}-${rand}`);
}

/** A full disk as one actionable line; other errors pass through. */
function diskFull(e: unknown, path: string, bytes: number | null): unknown {
  if (!isDiskFull(e)) return e;
  return new ResourceError(
    "disk space",
    bytes,
    `writing ${path}`,
    "free space on that disk or write somewhere else; nothing was left half-written",
  );
}

/** Writes bytes or text to `path` through a temporary file and a rename. */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const tmp = tempSibling(path);
  try {
    if (typeof data === "string") await Deno.writeTextFile(tmp, data);
    else await Deno.writeFile(tmp, data);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw diskFull(e, path, typeof data === "string" ? null : data.length);
  }
}

/**
 * Builds a directory through `fill(tmpDir)` and renames it to `path`. An existing `path` is
 * replaced only after the new one is complete, and only once `mayReplace` (the caller's output
 * guard, checked again now that time has passed) has not thrown.
 */
export async function writeDirAtomic(
  path: string,
  fill: (tmpDir: string) => Promise<void>,
  mayReplace: () => Promise<unknown> = () => Promise.resolve(),
): Promise<void> {
  const tmp = tempSibling(path);
  await Deno.mkdir(tmp, { recursive: true });
  try {
    await fill(tmp);
    await mayReplace();
    let old: string | null = null;
    try {
      await Deno.stat(path);
      old = tempSibling(path);
      await Deno.rename(path, old);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    await Deno.rename(tmp, path);
    if (old) await Deno.remove(old, { recursive: true });
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw diskFull(e, path, null);
  }
}

/** Whether `path` exists (any other error than its absence is thrown). */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}
