#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang in build-fuzz/ and runs each for SECONDS
# (default 20). Exits 1 when a target crashes, 2 when the build fails. The input that
# crashed is kept in build-fuzz/findings/; replay it with: build-fuzz/fuzz/TARGET FILE
#
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail

seconds=${1:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build-fuzz

mkdir -p "$build"
if ! { cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
             -DMH_BUILD_FUZZERS=ON -DMH_BUILD_TESTS=OFF &&
       cmake --build "$build" -j2 --target fuzzers; } > "$build/build.log" 2>&1; then
    tail -n 40 "$build/build.log" >&2
    echo "fuzz: build failed (log: $build/build.log)" >&2
    exit 2
fi

failed=()
for source in "$root"/fuzz/*_fuzz.cpp; do
    target=$(basename "$source" .cpp)
    corpus=${target%_fuzz}
    # New inputs go to the build tree; the seeds in fuzz/corpus/ stay as committed.
    mkdir -p "$build/corpus/$corpus" "$build/findings"
    echo "fuzz: $target for ${seconds}s" >&2
    if ! "$build/fuzz/$target" -max_total_time="$seconds" -print_final_stats=1 \
            -artifact_prefix="$build/findings/$target-" \
            "$build/corpus/$corpus" "$root/fuzz/corpus/$corpus" 2> "$build/$target.log"; then
        tail -n 40 "$build/$target.log" >&2
        failed+=("$target")
    else
        grep -E '^stat::number_of_executed_units|^stat::new_units_added' "$build/$target.log" \
            | sed "s/^/fuzz: $target: /" >&2 || true
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: crashed: ${failed[*]} (inputs in $build/findings/)" >&2
    exit 1
fi
echo "fuzz: no crash" >&2
