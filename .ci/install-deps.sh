#!/usr/bin/env bash
# System packages the tests use beyond Deno (without them those tests are ignored, not failed):
# - a CBLAS, so CI exercises the native backend (tests/native_backend.test.ts);
# - a C++ compiler, for the cuda shim's no-op stand-in and its memory pool (tests/cuda_host.test.ts),
#   and its C driver (cc), for the native backend's CPU kernels (tests/cpu_kernels.test.ts).
# Debian/Ubuntu only; a no-op when both are already installed.
set -euo pipefail
want=()
if ! ldconfig -p 2>/dev/null | grep -q 'libopenblas\.so\.0'; then want+=(libopenblas0); fi
if ! command -v "${CXX:-c++}" >/dev/null 2>&1; then want+=(g++); fi
if [ ${#want[@]} -eq 0 ]; then
  echo "install-deps: libopenblas0 and a C++ compiler already present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${want[@]}"
