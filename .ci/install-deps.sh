#!/usr/bin/env bash
# System libraries the tests use beyond Deno: a CBLAS, so CI exercises the native backend
# (tests/native_backend.test.ts; without it those tests are ignored, not failed).
# Debian/Ubuntu only; a no-op when OpenBLAS is already installed.
set -euo pipefail
if ldconfig -p 2>/dev/null | grep -q 'libopenblas\.so\.0'; then
  echo "install-deps: libopenblas0 already present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends libopenblas0
