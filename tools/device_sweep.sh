#!/usr/bin/env bash
# Continues kept sweep records (docs/results/NAME, written by `duaf sweep keep`) on a GPU machine
# with --backend cuda, and brings the grown records back: a table too slow for the CPUs grows over
# several short device sessions. Same machine setup as tools/device_check.sh (carry tmp/device,
# made by tools/device_pack.sh).
#
#   DUAF_SWEEP_RECORD="docs/results/NAME [docs/results/OTHER ...]" DUAF_SWEEP_DATA=beauty-x10 \
#     tools/device_sweep.sh
#   # then, here, for each: rm -r docs/results/NAME && cp -r FILES_AT/records/NAME docs/results/NAME
#
#   DUAF_SWEEP_RECORD   one record or several, separated by spaces, all made on DUAF_SWEEP_DATA;
#                       they grow at the same time, each in its own DUAF_SWEEP_PROCS processes
#   DUAF_SWEEP_DATA     the dataset the record was made on, rebuilt here from the pack's raw files
#                       (the sweep refuses any other): beauty (Amazon Beauty 2014, 5-core) or
#                       beauty-xK (the same replicated K times, tools/scale_data.ts)
#   DUAF_SWEEP_PROCS    sweep processes sharing the GPU, each training one run at a time (default 4)
#   DUAF_SWEEP_LIMIT    seconds each process trains before it stops (--time-limit; default 300).
#                       The record keeps finished runs only: a run cut off starts over next time
#   DUAF_SWEEP_BACKEND  cuda (default); native or wasm try the script on a CPU machine
#   DUAF_SWEEP_WORK     scratch folder: the dataset (reused by later calls) and the working sweep
#                       (default /tmp/duaf-device-sweep)
#
# $OUT (else tmp/device-out) gets records/NAME/ (each grown record), status.md (`duaf sweep status`
# of each) and logs.tar.gz (preprocess and every process's stderr).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PACK=${DUAF_DEVICE_PACK:-$ROOT/tmp/device}
OUT=${OUT:-$ROOT/tmp/device-out}
RECORDS=${DUAF_SWEEP_RECORD:?DUAF_SWEEP_RECORD=docs/results/NAME: the kept sweeps to continue}
DATA=${DUAF_SWEEP_DATA:-beauty}
PROCS=${DUAF_SWEEP_PROCS:-4}
LIMIT=${DUAF_SWEEP_LIMIT:-300}
BACKEND=${DUAF_SWEEP_BACKEND:-cuda}
WORKDIR=${DUAF_SWEEP_WORK:-/tmp/duaf-device-sweep}
PYTHON=${PYTHON:-python3}
LOGS=$(mktemp -d /tmp/duaf-sweep-logs.XXXXXX)
mkdir -p "$OUT"
log() { echo "device_sweep: $*" >&2; }

# Each record works in, and comes back as, a folder named after it: the names must differ.
for record in $RECORDS; do
  [ -f "$record/manifest.json" ] || { log "no sweep record at $record"; exit 2; }
done
dup=$(for record in $RECORDS; do basename "$record"; done | sort | uniq -d | head -1)
[ -z "$dup" ] || { log "two records named $dup: give each its own folder name"; exit 2; }
source "$ROOT/tools/device_env.sh"
[ -n "$DENO" ] || { log "no Deno (run tools/device_pack.sh, carry tmp/device)"; exit 2; }
export NO_COLOR=1
if [ "$BACKEND" = cuda ]; then
  export DUAF_CUDA_LIB=$ROOT/ffi/cuda/build/libduaf_cuda.so
  [ -f "$DUAF_CUDA_LIB" ] || "$DENO" run -A --no-config --no-lock ffi/cuda/build.ts >&2 ||
    { log "the cuda shim did not build"; exit 2; }
fi
duaf() { "$DENO" run -A --no-config --no-lock "$PACK/duaf.js" "$@"; }

# ---- the dataset, as the record's was made ------------------------------------------------
reviews=$PACK/reviews_Beauty_5.json.gz
meta=$PACK/meta_Beauty.json.gz
case "$DATA" in
  beauty) ;;
  beauty-x[0-9]*)
    input=$("$DENO" run -A --no-config --no-lock "$PACK/scale_data.js" --copies "${DATA#beauty-x}" \
      --source "$PACK" --cache "$WORKDIR/scale-data") || { log "building $DATA failed"; exit 2; }
    reviews=$(echo "$input" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["reviews"])')
    meta=$(echo "$input" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["meta"])')
    ;;
  *) log "DUAF_SWEEP_DATA: beauty or beauty-xK, got '$DATA'"; exit 2 ;;
esac
DATASET=$WORKDIR/data/$DATA
if [ ! -f "$DATASET/manifest.json" ]; then
  duaf preprocess --format amazon2014 --reviews "$reviews" --meta "$meta" --out "$DATASET" \
    --quiet >/dev/null 2>"$LOGS/preprocess.log" || { log "preprocess failed: $(tail -1 "$LOGS/preprocess.log")"; exit 2; }
fi

# ---- the sweeps: PROCS processes a record sharing its work folder, each stops at LIMIT -------
for record in $RECORDS; do
  name=$(basename "$record")
  work=$WORKDIR/sweeps/$name
  rm -rf "$work" && mkdir -p "$(dirname "$work")" && cp -r "$record" "$work"
  log "$work: $PROCS processes, --backend $BACKEND, --time-limit $LIMIT"
  for i in $(seq 1 "$PROCS"); do
    duaf sweep "$DATASET" --out "$work" --backend "$BACKEND" --no-wait --time-limit "$LIMIT" \
      >"$LOGS/sweep-$name-$i.json" 2>"$LOGS/sweep-$name-$i.log" &
    sleep 2 # each claims its first run before the next starts looking
  done
done
wait

# ---- back: the grown records and where they stand ------------------------------------------
rm -rf "$OUT/records" "$OUT/status.md" && mkdir -p "$OUT/records"
for record in $RECORDS; do
  name=$(basename "$record")
  for i in $(seq 1 "$PROCS"); do
    log "$name, process $i: $(tail -c 300 "$LOGS/sweep-$name-$i.json" | tr -d '\n')"
  done
  duaf sweep keep "$WORKDIR/sweeps/$name" "$OUT/records/$name" >/dev/null 2>>"$LOGS/keep.log" ||
    { log "sweep keep of $name failed: $(tail -1 "$LOGS/keep.log")"; }
  status=$(duaf sweep status "$WORKDIR/sweeps/$name" 2>>"$LOGS/keep.log")
  printf '%s\n\n' "$status" >>"$OUT/status.md"
  log "$(echo "$status" | head -1)"
done
tar -czf "$OUT/logs.tar.gz" -C "$LOGS" . && rm -rf "$LOGS"
