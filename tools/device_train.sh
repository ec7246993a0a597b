#!/usr/bin/env bash
# Trains every model of the Beauty results table on one GPU (--backend cuda), all runs at once,
# each to early stopping or DUAF_TRAIN_CAP seconds (then SIGINT: the run saves and stops), and
# evaluates each run's best-valid checkpoint on the test split. Same machine setup as
# tools/device_check.sh (carry tmp/device, made by tools/device_pack.sh).
#
#   tools/device_train.sh      # $OUT/results.jsonl: one `duaf eval` line per run; $OUT/runs.tar.gz
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PACK=${DUAF_DEVICE_PACK:-$ROOT/tmp/device}
OUT=${OUT:-$ROOT/tmp/device-out}
CAP=${DUAF_TRAIN_CAP:-400}
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3}
source "$ROOT/tools/device_env.sh"
[ -n "$DENO" ] || { echo "device_train: no Deno (run tools/device_pack.sh, carry tmp/device)" >&2; exit 2; }
export DUAF_CUDA_LIB=$ROOT/ffi/cuda/build/libduaf_cuda.so NO_COLOR=1
[ -f "$DUAF_CUDA_LIB" ] || "$DENO" run -A --no-config --no-lock ffi/cuda/build.ts >&2
duaf() { "$DENO" run -A --no-config --no-lock "$PACK/duaf.js" "$@"; }

DATASET=/tmp/duaf-beauty
[ -d "$DATASET" ] || duaf preprocess --format amazon2014 --reviews "$PACK/reviews_Beauty_5.json.gz" \
  --meta "$PACK/meta_Beauty.json.gz" --out "$DATASET" --quiet >/dev/null
RUNS=/tmp/duaf-runs
rm -rf "$RUNS" && mkdir -p "$RUNS"
declare -A SETS=(
  [pop]="model=pop"
  [sasrec]="model=sasrec"
  [gru4rec]="model=gru4rec"
  [fdsa]="model=fdsa"
  [duafmat]="model=duafmat"
  [duafmat-no-duaf]="model=duafmat duafmat.fusion=false"
  [duafmat-no-vscl]="model=duafmat duafmat.vscl=false"
)
for name in "${!SETS[@]}"; do
  args=()
  for s in ${SETS[$name]}; do args+=(--set "$s"); done
  (timeout -s INT -k 30 "$CAP" "$DENO" run -A --no-config --no-lock "$PACK/duaf.js" train "$DATASET" \
    --out "$RUNS/$name" "${args[@]}" --backend cuda >"$RUNS/$name.train.json" 2>"$RUNS/$name.train.log"
  echo "$name: train exit $?" >&2) &
done
wait
: >"$OUT/results.jsonl"
for name in "${!SETS[@]}"; do
  if duaf eval "$RUNS/$name" --backend cuda >"$RUNS/$name.eval.json" 2>"$RUNS/$name.eval.log"; then
    echo "{\"name\":\"$name\",\"eval\":$(cat "$RUNS/$name.eval.json")}" >>"$OUT/results.jsonl"
  else
    echo "$name: eval failed: $(tail -1 "$RUNS/$name.eval.log")" >&2
  fi
done
cat "$OUT/results.jsonl"
tar -czf "$OUT/runs.tar.gz" -C "$RUNS" --exclude '*.safetensors' .
