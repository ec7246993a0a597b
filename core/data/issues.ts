/**
 * Bad-input policy shared by every reader. Strict mode (the default) stops at the first bad row
 * with a one-line `file:line: field: problem` DataError; lenient mode skips the row and counts it,
 * grouped by file, field and kind of problem, so the summary stays short on large inputs.
 */
import { DataError } from "../errors.ts";

export interface SkipCount {
  file: string;
  field: string;
  problem: string;
  count: number;
  /** First line (1-based) where this problem was seen; null when not line-based. */
  firstLine: number | null;
}

export class Issues {
  readonly #groups = new Map<string, SkipCount>();

  constructor(readonly strict: boolean) {}

  /**
   * Reports a bad row. Throws in strict mode; otherwise records it and returns so the caller can
   * skip the row. `kind` groups messages that differ only in the offending value.
   */
  bad(file: string, line: number | null, field: string, problem: string, kind = problem): void {
    if (this.strict) throw new DataError(file, line, field, problem);
    const key = `${file}\0${field}\0${kind}`;
    const g = this.#groups.get(key);
    if (g) g.count++;
    else this.#groups.set(key, { file, field, problem: kind, count: 1, firstLine: line });
  }

  /** Records `n` skips counted elsewhere (e.g. by a feature reader). */
  addSkipped(file: string, field: string, problem: string, n: number): void {
    if (n <= 0) return;
    const key = `${file}\0${field}\0${problem}`;
    const g = this.#groups.get(key);
    if (g) g.count += n;
    else this.#groups.set(key, { file, field, problem, count: n, firstLine: null });
  }

  get total(): number {
    let n = 0;
    for (const g of this.#groups.values()) n += g.count;
    return n;
  }

  /** Skip counts in the order they were first seen. */
  summary(): SkipCount[] {
    return [...this.#groups.values()].map((g) => ({ ...g }));
  }
}
