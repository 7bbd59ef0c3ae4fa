#!/usr/bin/env bash
# One command on a fresh Debian bookworm machine: installs what is missing, builds,
# and runs every test (unit suites, CLI suites against the real binaries, short fuzz runs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
ctest --test-dir build --output-on-failure -j2 --timeout 600
