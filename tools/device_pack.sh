#!/usr/bin/env bash
# Prepares tmp/device/ (git-ignored) for tools/device_check.sh (and device_train.sh,
# device_sweep.sh) on a GPU machine that can reach
# nothing outside itself: a compressed Deno binary, the CLI bundled into one JS file (npm
# dependencies included, so no node_modules are needed there) and the Beauty reviews.
#
#   tools/device_pack.sh            # then carry tmp/device to the GPU machine with the repo
#
# Total size ~35 MB (Deno ~31 MB xz-compressed). Compressing Deno takes a few minutes on two
# cores; it is skipped when tmp/device/deno.xz already holds this Deno version.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PACK=tmp/device
DENO=${DENO:-$(command -v deno)}
DATA=${DUAF_DATA:-$ROOT/../shared/data/amazon-beauty-2014}
mkdir -p "$PACK"

version=$("$DENO" --version | head -1)
if [ ! -f "$PACK/deno.xz" ] || [ "$(cat "$PACK/deno.version" 2>/dev/null)" != "$version" ]; then
  echo "device_pack: compressing $DENO ($version)" >&2
  xz -T2 -6 -c "$(readlink -f "$DENO")" >"$PACK/deno.xz.tmp"
  mv "$PACK/deno.xz.tmp" "$PACK/deno.xz"
  echo "$version" >"$PACK/deno.version"
fi

# The bundle resolves its own resources relative to tmp/device/, so device_check.sh points the
# cuda backend at the shim with DUAF_CUDA_LIB.
echo "device_pack: bundling cli/main.ts" >&2
# DuckDB's native binding (preprocess --engine duckdb only) stays out: the bundle cannot hold it.
"$DENO" bundle --platform deno --external "@duckdb/*" -o "$PACK/duaf.js" cli/main.ts >&2
# Beauty xK for tools/device_sweep.sh.
"$DENO" bundle --platform deno -o "$PACK/scale_data.js" tools/scale_data.ts >&2
# The whole-model parity test imports npm packages (zod): bundled, it runs with --no-config.
"$DENO" bundle --platform deno -o "$PACK/backend_models.test.js" tests/backend_models.test.ts >&2

for f in reviews_Beauty_5.json.gz meta_Beauty.json.gz; do
  if [ -f "$DATA/$f" ]; then cp "$DATA/$f" "$PACK/$f"; else echo "device_pack: no $DATA/$f" >&2; fi
done
du -sh "$PACK" >&2
echo "device_pack: ready; run tools/device_check.sh there, carrying $PACK" >&2
