/**
 * Run claims: a process works on a sweep run only while it holds that run's lock file, created
 * with exclusive create (O_CREAT|O_EXCL through Deno.open createNew), so two processes (the two
 * cores of one machine, or machines sharing the directory) never train the same run at once.
 *
 * The lock holds JSON {host, pid, start, token, at}. A lock is stale, and may be reclaimed, when
 *   - it was written on this host and its process is gone: no /proc/PID, or /proc/PID/stat shows
 *     a different process start time (the pid was reused). A live process's lock on this host
 *     is never stale. Where /proc does not exist (macOS, Windows) the rule below applies;
 *   - it was written on another host and its file's mtime is older than `staleMs` (default 10
 *     minutes). The holder touches its lock every `HEARTBEAT_MS` (1 minute) while it works, so
 *     a live holder's lock never looks stale unless the hosts' clocks are minutes apart or the
 *     holder's event loop is blocked for minutes (a single evaluation that long: raise
 *     --stale-minutes).
 *   - a lock of this very process that this process does not hold (left by an earlier call in
 *     the same process that failed) is stale too.
 * Reclaiming renames the stale lock to a unique name (only one reclaimer's rename succeeds) and
 * checks that what it moved is the lock it judged stale; if it moved a fresh lock instead (a
 * third process reclaimed and re-locked in between), it puts that lock back.
 */
import { join } from "node:path";

export const HEARTBEAT_MS = 60_000;
export const DEFAULT_STALE_MS = 10 * 60_000;

/** Tokens of every lock held in this process (by any Claims instance). */
const heldInProcess = new Set<string>();

export interface LockInfo {
  host: string;
  pid: number;
  /** The process start time from /proc/PID/stat (clock ticks since boot), or null. */
  start: number | null;
  token: string;
  at: string;
}

/** /proc/PID/stat's start time field (22nd), or null where /proc is not available. */
export function processStart(pid: number): number | null | "gone" {
  let stat: string;
  try {
    stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      // No /proc at all: we cannot tell; with /proc but no such pid: gone.
      try {
        Deno.statSync("/proc/self/stat");
        return "gone";
      } catch {
        return null;
      }
    }
    return null;
  }
  // The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const start = Number(fields[19]);
  return Number.isFinite(start) ? start : null;
}

function hostname(): string {
  try {
    return Deno.hostname();
  } catch {
    return "unknown";
  }
}

function newToken(): string {
  return [...crypto.getRandomValues(new Uint8Array(8))].map((b) => b.toString(16).padStart(2, "0"))
    .join("");
}

export interface ClaimsOptions {
  /** A lock whose mtime is older than this is stale from any host (ms). */
  staleMs?: number;
  /** Called when a stale lock is reclaimed (for the log). */
  onReclaim?: (name: string, info: LockInfo | null) => void;
}

/** The locks of one directory held by this process. */
export class Claims {
  readonly #dir: string;
  readonly #staleMs: number;
  readonly #onReclaim?: (name: string, info: LockInfo | null) => void;
  readonly #held = new Map<string, string>();
  readonly #host = hostname();
  readonly #start = processStart(Deno.pid);
  #timer: ReturnType<typeof setInterval> | null = null;

  constructor(dir: string, opts: ClaimsOptions = {}) {
    this.#dir = dir;
    this.#staleMs = opts.staleMs ?? DEFAULT_STALE_MS;
    this.#onReclaim = opts.onReclaim;
  }

  path(name: string): string {
    return join(this.#dir, `${name}.lock`);
  }

  /** Reads a lock; null when there is none, "torn" when it cannot be parsed. */
  read(name: string): LockInfo | null | "torn" {
    let text: string;
    try {
      text = Deno.readTextFileSync(this.path(name));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return null;
      throw e;
    }
    try {
      return JSON.parse(text) as LockInfo;
    } catch {
      return "torn";
    }
  }

  /** Whether the lock `info` on `name` is stale (see the module comment for the rule). */
  isStale(name: string, info: LockInfo | "torn"): boolean {
    let mtime: number;
    try {
      mtime = Deno.statSync(this.path(name)).mtime?.getTime() ?? Date.now();
    } catch {
      return false; // gone meanwhile: nothing to reclaim
    }
    if (info !== "torn" && info.host === this.#host) {
      if (info.pid === Deno.pid) return !heldInProcess.has(info.token);
      const start = processStart(info.pid);
      if (start === "gone") return true;
      if (start !== null && info.start !== null) return start !== info.start;
      // No /proc here: the heartbeat rule decides, as for other hosts.
    }
    // An unparsable lock younger than the stale age may be mid-write (it is written in one call
    // right after its creation).
    return Date.now() - mtime > this.#staleMs;
  }

  /** Tries to take the lock on `name`; reclaims a stale one. True when this process holds it. */
  tryClaim(name: string): boolean {
    if (this.#held.has(name)) return true;
    for (let attempt = 0; attempt < 2; attempt++) {
      if (this.#create(name)) return true;
      const info = this.read(name);
      if (info === null) continue; // released meanwhile: try again
      if (!this.isStale(name, info)) return false;
      this.#reclaim(name, info);
    }
    return false;
  }

  #create(name: string): boolean {
    const token = newToken();
    const info: LockInfo = {
      host: this.#host,
      pid: Deno.pid,
      start: typeof this.#start === "number" ? this.#start : null,
      token,
      at: new Date().toISOString(),
    };
    let file: Deno.FsFile;
    try {
      file = Deno.openSync(this.path(name), { write: true, createNew: true });
    } catch (e) {
      if (e instanceof Deno.errors.AlreadyExists) return false;
      throw e;
    }
    try {
      file.writeSync(new TextEncoder().encode(JSON.stringify(info) + "\n"));
    } finally {
      file.close();
    }
    this.#held.set(name, token);
    heldInProcess.add(token);
    this.#startHeartbeat();
    return true;
  }

  #reclaim(name: string, info: LockInfo | "torn"): void {
    const path = this.path(name);
    const aside = `${path}.stale-${Deno.pid}-${newToken()}`;
    try {
      Deno.renameSync(path, aside);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return; // another process reclaimed it first
      throw e;
    }
    let moved: string;
    try {
      moved = Deno.readTextFileSync(aside);
    } catch {
      moved = "";
    }
    const judged = info === "torn" ? null : info.token;
    let movedToken: string | null = null;
    try {
      movedToken = (JSON.parse(moved) as LockInfo).token;
    } catch {
      movedToken = null;
    }
    if (movedToken !== judged) {
      // We moved someone's fresh lock: put it back (unless yet another lock exists by now).
      try {
        Deno.linkSync(aside, path);
      } catch {
        // leave it; its holder finds its lock gone and stops at the next check
      }
      Deno.removeSync(aside);
      return;
    }
    Deno.removeSync(aside);
    this.#onReclaim?.(name, info === "torn" ? null : info);
  }

  /** Whether this process still holds `name` (its token is in the lock file). */
  stillHeld(name: string): boolean {
    const token = this.#held.get(name);
    if (!token) return false;
    const info = this.read(name);
    return info !== null && info !== "torn" && info.token === token;
  }

  /** Releases `name` if this process holds it (the file is removed only if it is still ours). */
  release(name: string): void {
    if (!this.#held.has(name)) return;
    if (this.stillHeld(name)) {
      try {
        Deno.removeSync(this.path(name));
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
    }
    heldInProcess.delete(this.#held.get(name)!);
    this.#held.delete(name);
    if (this.#held.size === 0) this.#stopHeartbeat();
  }

  /** Releases every lock this process holds. */
  releaseAll(): void {
    for (const name of [...this.#held.keys()]) this.release(name);
  }

  /** Refreshes the mtime of every held lock (the heartbeat other hosts judge staleness by). */
  touch(): void {
    const now = new Date();
    for (const name of this.#held.keys()) {
      try {
        Deno.utimeSync(this.path(name), now, now);
      } catch {
        // a lost lock shows in stillHeld
      }
    }
  }

  #startHeartbeat(): void {
    if (this.#timer !== null) return;
    const timer = setInterval(() => this.touch(), HEARTBEAT_MS);
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  #stopHeartbeat(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }
}
