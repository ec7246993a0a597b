/**
 * The human-facing tables of a dataset artifact as Arrow IPC files (Feather v2), which pandas
 * (`pd.read_feather`), polars (`pl.read_ipc`) and DuckDB open without duaf.
 */
import { makeVector, Table, tableFromIPC, tableToIPC, Utf8, vectorFromArray } from "apache-arrow";
import { DataError } from "../errors.ts";

function utf8(values: readonly (string | null)[]) {
  return vectorFromArray(values as (string | null)[], new Utf8());
}

export function usersTable(userIds: readonly string[]): Uint8Array {
  const index = Int32Array.from({ length: userIds.length }, (_, u) => u);
  return tableToIPC(
    new Table({ user_index: makeVector(index), user_id: utf8(userIds) }),
    "file",
  );
}

/** One row per item 1..I (the padding row is not a table row). */
export function itemsTable(
  itemIds: readonly string[],
  titles: readonly (string | null)[],
  categories: readonly string[],
): Uint8Array {
  const index = Int32Array.from({ length: itemIds.length }, (_, i) => i + 1);
  return tableToIPC(
    new Table({
      item_index: makeVector(index),
      item_id: utf8(itemIds),
      title: utf8(titles),
      category: utf8(categories),
    }),
    "file",
  );
}

export function interactionsTable(
  seqOffsets: Int32Array,
  seqItems: Int32Array,
  seqTimes: Float64Array,
): Uint8Array {
  const users = new Int32Array(seqItems.length);
  for (let u = 0; u + 1 < seqOffsets.length; u++) {
    users.fill(u, seqOffsets[u], seqOffsets[u + 1]);
  }
  return tableToIPC(
    new Table({
      user_index: makeVector(users),
      item_index: makeVector(seqItems),
      timestamp: makeVector(seqTimes),
    }),
    "file",
  );
}

/**
 * Reads one utf8 column of an Arrow IPC file, expecting `rows` rows (ids for userIds() and
 * itemIds(); synchronous so those stay plain accessors).
 */
export function readStringColumn(path: string, column: string, rows: number): string[] {
  let bytes: Uint8Array;
  try {
    bytes = Deno.readFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new DataError(path, null, null, "no such file");
    throw e;
  }
  let table: Table;
  try {
    table = tableFromIPC(bytes);
  } catch (e) {
    throw new DataError(path, null, null, `not an Arrow IPC file (${(e as Error).message})`);
  }
  const col = table.getChild(column);
  if (!col || !(col.type instanceof Utf8)) {
    throw new DataError(path, null, column, "missing or not a utf8 column");
  }
  if (col.length !== rows) {
    throw new DataError(path, null, column, `has ${col.length} rows, the manifest says ${rows}`);
  }
  return col.toArray() as string[];
}
