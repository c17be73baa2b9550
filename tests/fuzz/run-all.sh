#!/bin/sh
# Run every libFuzzer target for SECONDS each (default 20), starting from a temporary
# copy of its committed seed corpus (so CI never grows tests/fuzz/corpus/). Builds
# BUILD_DIR (default <source>/build-fuzz) with clang and the sanitizers first if needed.
# Exits non-zero if any target finds a crash, a leak, a timeout or an out-of-memory;
# the crashing input is kept in $NF_FUZZ_ARTIFACTS (default: a temporary folder, printed).
#
#   tests/fuzz/run-all.sh [SECONDS] [TARGET...]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
secs=${1:-20}
[ $# -gt 0 ] && shift
targets=${*:-"checkpoint json audio jobs plugin"}
build=${BUILD_DIR:-$src/build-fuzz}

if [ ! -f "$build/build.ninja" ]; then
    CC=clang meson setup "$build" "$src" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false
fi
# A target the build does not have (fuzz_plugin without LV2) is named, not silently dropped.
exes=""
have=""
for t in $targets; do
    if grep -q "^build tests/fuzz/fuzz_$t:" "$build/build.ninja"; then
        exes="$exes tests/fuzz/fuzz_$t"
        have="$have $t"
    else
        echo "fuzz_$t: not configured in $build (is LV2 missing or -Dplugin=disabled?); not run"
    fi
done
targets=$have
ninja -C "$build" $exes

work=$(mktemp -d "${TMPDIR:-/tmp}/nf-fuzz.XXXXXX")
artifacts=${NF_FUZZ_ARTIFACTS:-$work/artifacts}
mkdir -p "$artifacts"
# Leaks are findings too; the limits keep a runaway input from taking the machine.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# NF_FUZZ_ALLOW_KNOWN=1 steps around the known, reported findings listed in RESULTS.md
# (so that a long run can look for new ones); without it they fail the run, as they should.
if [ "${NF_FUZZ_ALLOW_KNOWN:-0}" = 1 ]; then
    export UBSAN_OPTIONS="$UBSAN_OPTIONS:suppressions=$here/known-ubsan.supp"
fi
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
# The plugin target must not pick up the bundled model.
export NOISEFLOOR_DEFAULT_MODEL="$work/no-default-model.safetensors"
status=0
for t in $targets; do
    corpus="$work/corpus-$t"
    mkdir -p "$corpus"
    cp -r "$here/corpus/$t/." "$corpus/"
    dict=""
    [ -f "$here/$t.dict" ] && dict="-dict=$here/$t.dict"
    echo "== fuzz_$t: $secs s"
    if ! "$build/tests/fuzz/fuzz_$t" -max_total_time="$secs" -max_len=65536 -timeout=20 \
            -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/$t-" \
            $dict "$corpus" > "$work/$t.log" 2>&1; then
        status=1
        echo "fuzz_$t FAILED; log: $work/$t.log, input(s):"
        ls "$artifacts" | grep "^$t-" | sed "s|^|  $artifacts/|"
        tail -40 "$work/$t.log"
    else
        grep -E "stat::number_of_executed_units|stat::new_units_added" "$work/$t.log" | tr '\n' ' '
        echo
    fi
done
if [ $status -eq 0 ]; then
    rm -rf "$work"
    echo "all fuzz targets ran clean"
fi
exit $status
