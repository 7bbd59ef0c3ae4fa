#!/usr/bin/env bash
# Configures and builds mh in build/ (release with debug info), two jobs at a time.
# Quiet when all is well; the compiler's messages when not.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
if ! cmake --build build -j2 >build/build.log 2>&1; then
  grep -vE '^\[ *[0-9]+%\]|^g?make\[' build/build.log >&2
  echo "build: failed (full log in build/build.log)" >&2
  exit 1
fi
grep -E 'warning:' build/build.log >&2 || true
