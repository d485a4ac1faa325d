#!/usr/bin/env bash
# Builds every fuzz target with cargo-fuzz's instrumentation (stable toolchain + RUSTC_BOOTSTRAP),
# so they cannot rot. Run one with: RUSTC_BOOTSTRAP=1 cargo fuzz run session fuzz/seeds/session
set -euo pipefail
cd "$(dirname "$0")"
RUSTC_BOOTSTRAP=1 cargo fuzz build
