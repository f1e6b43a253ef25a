#!/usr/bin/env bash
# Build both toolchains' kernels into build/. Needs clang 14 + wasm-ld (Debian: clang lld) and
# `npm ci` in this folder (assemblyscript).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p build
[ -x node_modules/.bin/asc ] || npm ci --no-audit --no-fund
# C: -mbulk-memory only so the y-zeroing loop becomes memory.fill (no libc memset to link).
clang --target=wasm32 -O3 -msimd128 -mbulk-memory -nostdlib -Wl,--no-entry -o build/c.wasm c/kernels.c
# AssemblyScript: -O3 = --optimizeLevel 3 --shrinkLevel 0; stub runtime (no GC, nothing allocated).
node_modules/.bin/asc as/kernels.ts -O3 --runtime stub --enable simd --noAssert -o build/as.wasm
ls -l build/*.wasm
