/**
 * From raw (user, item, time) rows to per-user chronological sequences: dedup, iterative k-core,
 * optional truncation, and index assignment. Raw ids are interned on arrival so memory is a few
 * typed arrays of the interaction count plus the distinct id strings.
 */

export type Dedup = "first" | "last" | "none";

class GrowableArray<T extends Int32Array | Float64Array> {
  #data: T;
  length = 0;
  constructor(private readonly make: (n: number) => T) {
    this.#data = make(1024);
  }
  push(v: number): void {
    if (this.length === this.#data.length) {
      const bigger = this.make(this.#data.length * 2);
      bigger.set(this.#data);
      this.#data = bigger;
    }
    this.#data[this.length++] = v;
  }
  view(): T {
    return this.#data.subarray(0, this.length) as T;
  }
}

/** Where a reader puts each valid interaction row, in input order. */
export interface InteractionSink {
  add(user: string, item: string, seconds: number): void;
}

/** Raw interactions in input order, with ids interned to dense raw numbers. */
export class InteractionLog implements InteractionSink {
  readonly userIds: string[] = [];
  readonly itemIds: string[] = [];
  readonly #userMap = new Map<string, number>();
  readonly #itemMap = new Map<string, number>();
  readonly #users = new GrowableArray((n) => new Int32Array(n));
  readonly #items = new GrowableArray((n) => new Int32Array(n));
  readonly #times = new GrowableArray((n) => new Float64Array(n));

  add(user: string, item: string, seconds: number): void {
    this.#users.push(intern(this.#userMap, this.userIds, user));
    this.#items.push(intern(this.#itemMap, this.itemIds, item));
    this.#times.push(seconds);
  }

  get length(): number {
    return this.#users.length;
  }

  columns(): { users: Int32Array; items: Int32Array; times: Float64Array } {
    return { users: this.#users.view(), items: this.#items.view(), times: this.#times.view() };
  }
}

function intern(map: Map<string, number>, ids: string[], id: string): number {
  let k = map.get(id);
  if (k === undefined) {
    k = ids.length;
    map.set(id, k);
    ids.push(id);
  }
  return k;
}

export interface SequenceOptions {
  dedup: Dedup;
  userCore: number;
  itemCore: number;
  /** Keep only each user's last N interactions; 0 keeps all. */
  maxSeqLen: number;
}

export interface Sequences {
  /** Raw user id of user index u (0-based, order of first appearance in the input). */
  userIds: string[];
  /** Raw item id of item index i is itemIds[i - 1] (items are 1-based; 0 is padding). */
  itemIds: string[];
  seqOffsets: Int32Array;
  seqItems: Int32Array;
  seqTimes: Float64Array;
  stats: {
    input: number;
    duplicates: number;
    kcoreRemoved: number;
    kcoreRounds: number;
    truncated: number;
  };
}

/**
 * Orders each user's rows by time (ties keep input order), drops duplicate (user, item) pairs,
 * applies the iterative (userCore, itemCore)-core, truncates, and indexes users and items in
 * order of first appearance among the surviving rows in input order.
 */
export function buildSequences(log: InteractionLog, opts: SequenceOptions): Sequences {
  const { users, items, times } = log.columns();
  const n = users.length;
  const numRawUsers = log.userIds.length;
  const numRawItems = log.itemIds.length;

  // Group rows by raw user (counting sort keeps input order), then sort each group by time.
  const start = new Int32Array(numRawUsers + 1);
  for (let e = 0; e < n; e++) start[users[e] + 1]++;
  for (let u = 0; u < numRawUsers; u++) start[u + 1] += start[u];
  const order = new Int32Array(n);
  const fill = start.slice(0, numRawUsers);
  for (let e = 0; e < n; e++) order[fill[users[e]]++] = e;
  const byTime = (a: number, b: number) => times[a] - times[b] || a - b;
  for (let u = 0; u < numRawUsers; u++) order.subarray(start[u], start[u + 1]).sort(byTime);

  const alive = new Uint8Array(n).fill(1);
  let duplicates = 0;
  if (opts.dedup !== "none") {
    const seen = new Set<number>();
    for (let u = 0; u < numRawUsers; u++) {
      seen.clear();
      const lo = start[u], hi = start[u + 1];
      for (let k = 0; k < hi - lo; k++) {
        const e = order[opts.dedup === "first" ? lo + k : hi - 1 - k];
        if (seen.has(items[e])) {
          alive[e] = 0;
          duplicates++;
        } else seen.add(items[e]);
      }
    }
  }

  // Iterative k-core: removing a row can push its user or item under the threshold, so repeat
  // until nothing changes. The result is the unique maximal core whatever the removal order.
  const userCount = new Int32Array(numRawUsers);
  const itemCount = new Int32Array(numRawItems);
  for (let e = 0; e < n; e++) {
    if (alive[e]) {
      userCount[users[e]]++;
      itemCount[items[e]]++;
    }
  }
  let kcoreRemoved = 0;
  let kcoreRounds = 0;
  if (opts.userCore > 1 || opts.itemCore > 1) {
    for (let changed = true; changed;) {
      changed = false;
      kcoreRounds++;
      for (let e = 0; e < n; e++) {
        if (
          alive[e] && (userCount[users[e]] < opts.userCore || itemCount[items[e]] < opts.itemCore)
        ) {
          alive[e] = 0;
          userCount[users[e]]--;
          itemCount[items[e]]--;
          kcoreRemoved++;
          changed = true;
        }
      }
    }
  }

  let truncated = 0;
  if (opts.maxSeqLen > 0) {
    for (let u = 0; u < numRawUsers; u++) {
      let keep = opts.maxSeqLen;
      for (let k = start[u + 1] - 1; k >= start[u]; k--) {
        const e = order[k];
        if (!alive[e]) continue;
        if (keep > 0) keep--;
        else {
          alive[e] = 0;
          truncated++;
        }
      }
    }
  }

  const userIndex = new Int32Array(numRawUsers).fill(-1);
  const itemIndex = new Int32Array(numRawItems).fill(0);
  const userIds: string[] = [];
  const itemIds: string[] = [];
  let total = 0;
  for (let e = 0; e < n; e++) {
    if (!alive[e]) continue;
    total++;
    if (userIndex[users[e]] < 0) {
      userIndex[users[e]] = userIds.length;
      userIds.push(log.userIds[users[e]]);
    }
    if (itemIndex[items[e]] === 0) {
      itemIds.push(log.itemIds[items[e]]);
      itemIndex[items[e]] = itemIds.length;
    }
  }

  const numUsers = userIds.length;
  const seqOffsets = new Int32Array(numUsers + 1);
  for (let u = 0; u < numRawUsers; u++) {
    if (userIndex[u] >= 0) seqOffsets[userIndex[u] + 1] = userCount[u];
  }
  if (opts.maxSeqLen > 0) {
    for (let u = 1; u <= numUsers; u++) {
      seqOffsets[u] = Math.min(seqOffsets[u], opts.maxSeqLen);
    }
  }
  for (let u = 0; u < numUsers; u++) seqOffsets[u + 1] += seqOffsets[u];
  const seqItems = new Int32Array(total);
  const seqTimes = new Float64Array(total);
  for (let u = 0; u < numRawUsers; u++) {
    const ui = userIndex[u];
    if (ui < 0) continue;
    let w = seqOffsets[ui];
    for (let k = start[u]; k < start[u + 1]; k++) {
      const e = order[k];
      if (!alive[e]) continue;
      seqItems[w] = itemIndex[items[e]];
      seqTimes[w] = times[e];
      w++;
    }
  }
  return {
    userIds,
    itemIds,
    seqOffsets,
    seqItems,
    seqTimes,
    stats: { input: n, duplicates, kcoreRemoved, kcoreRounds, truncated },
  };
}
