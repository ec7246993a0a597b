// The stop requests of long commands: the time limit's clock and the duration flag's grammar
// (the signals themselves are sent to real processes in cli_train and cli_sweep).
import assert from "node:assert/strict";
import { durationFlag } from "../cli/flags.ts";
import { EXIT_CODE, stopOnSignals } from "../cli/interrupt.ts";

const quiet = { log: () => {}, start: () => ({ tick: () => {}, done: () => {} }) };

Deno.test("--time-limit durations: seconds, h/m/s units, refusals", () => {
  assert.equal(durationFlag("time-limit", undefined), undefined);
  assert.equal(durationFlag("time-limit", "5400"), 5400);
  assert.equal(durationFlag("time-limit", "0"), 0);
  assert.equal(durationFlag("time-limit", "90m"), 5400);
  assert.equal(durationFlag("time-limit", "1h30m"), 5400);
  assert.equal(durationFlag("time-limit", "1.5h"), 5400);
  assert.equal(durationFlag("time-limit", "2h5s"), 7205);
  assert.equal(durationFlag("time-limit", " 45s "), 45);
  for (const bad of ["", "h", "10 min", "-5", "1d", "30m1h", "1e3", "m30"]) {
    assert.throws(() => durationFlag("time-limit", bad), /--time-limit: expected seconds/, bad);
  }
});

Deno.test("the time limit stops at its deadline, not before, and names itself", () => {
  let t = 1000;
  const stop = stopOnSignals(quiet, { timeLimitSeconds: 2, now: () => t });
  try {
    assert.equal(stop.shouldStop(), false);
    t += 1999;
    assert.equal(stop.shouldStop(), false);
    assert.equal(stop.reason(), null);
    t += 1;
    assert.equal(stop.shouldStop(), true);
    assert.equal(stop.reason(), "time-limit");
    assert.equal(EXIT_CODE[stop.reason()!], 75);
  } finally {
    stop.dispose();
  }
  const none = stopOnSignals(quiet, { now: () => 1e15 });
  try {
    assert.equal(none.shouldStop(), false);
  } finally {
    none.dispose();
  }
});
