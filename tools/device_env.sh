# Sourced by tools/device_check.sh, device_train.sh and device_sweep.sh on a GPU machine that reaches nothing
# outside itself. Needs PACK (tmp/device, made by tools/device_pack.sh) and PYTHON; sets
#   DENO         $DENO, else `deno` on PATH, else the binary in $PACK/deno.xz; empty if none runs
#   DUAF_CUBLAS  the newest libcublas.so.1[123] among PyTorch's wheels and the CUDA lib folders
#                (its libcublasLt beside it goes on LD_LIBRARY_PATH); unset: the shim's own search
#   DUAF_WASM_DIR  the repository's wasm/build, where the bundled CLI ($PACK/duaf.js) finds the
#                kernels of the wasm and native backends
#   DUAF_WASM_THREADS  1: the bundle holds no separate module for the second kernel thread
if [ -z "${DENO:-}" ]; then
  if command -v deno >/dev/null; then
    DENO=$(command -v deno)
  elif [ -f "$PACK/deno.xz" ]; then
    xz -dc "$PACK/deno.xz" >/tmp/duaf-deno && chmod +x /tmp/duaf-deno && DENO=/tmp/duaf-deno
  fi
fi
if [ -z "${DENO:-}" ] || ! "$DENO" --version >/dev/null 2>&1; then DENO=""; fi

export DUAF_WASM_DIR=${DUAF_WASM_DIR:-$ROOT/wasm/build}
export DUAF_WASM_THREADS=${DUAF_WASM_THREADS:-1}

if [ -z "${DUAF_CUBLAS:-}" ]; then
  for dir in $("$PYTHON" -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null) \
    /usr/local/cuda/lib64 /usr/lib/x86_64-linux-gnu; do
    lib=$(find "$dir" -name 'libcublas.so.1[123]*' 2>/dev/null | sort -r | head -1)
    if [ -n "$lib" ]; then
      export DUAF_CUBLAS=$lib
      export LD_LIBRARY_PATH=$(dirname "$lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
      break
    fi
  done
fi
