#!/bin/sh
# noisefloor set-up on Debian 12 (run as root, or with sudo for the package step).
#
#   ./setup.sh        install what is missing, build everything, render a demo kit
#                     with the bundled default model into ./out
#   ./setup.sh test   install what is missing, build (warnings are errors), run the whole
#                     test suite, then again under AddressSanitizer + UBSan, then each
#                     fuzz target briefly
set -eu
cd "$(dirname "$0")"

BUILD_PKGS="meson ninja-build pkg-config gcc libsndfile1-dev libfftw3-dev libopenblas-dev
libsamplerate0-dev lv2-dev liblilv-dev libpng-dev"
TEST_PKGS="lilv-utils serdi sordi valgrind clang libclang-rt-14-dev jalv jackd2"

install_missing() {
    missing=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    echo "setup: installing Debian packages:$missing"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
}

configure() { # configure DIR [meson options...]
    dir=$1
    shift
    if [ -f "$dir/build.ninja" ]; then
        meson configure "$dir" "$@" >/dev/null
    else
        meson setup "$dir" "$@"
    fi
}

mode=${1:-demo}
case "$mode" in
demo)
    install_missing $BUILD_PKGS
    configure build --buildtype=release
    ninja -C build
    # A demo kit from the bundled default model: four takes of every class.
    ./build/cli/noisefloor generate --all-classes -n 4 --seed 1 -o out
    echo "setup: the demo kit is in $(pwd)/out"
    ;;
test)
    install_missing $BUILD_PKGS $TEST_PKGS
    configure build --buildtype=release -Dwerror=true
    ninja -C build
    status=0
    meson test -C build --print-errorlogs --num-processes 2 || status=1
    configure build-asan --buildtype=debugoptimized -Dwerror=true \
        -Db_sanitize=address,undefined -Db_lundef=false
    ninja -C build-asan
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        meson test -C build-asan --print-errorlogs --num-processes 2 || status=1
    if [ -x tests/fuzz/run-all.sh ]; then
        tests/fuzz/run-all.sh 20 || status=1
    fi
    # One closing line for CI: the counts of both runs.
    python_free_count() { # testlog.json -> "passed failed"
        awk -F'"result": "' 'NF > 1 { split($2, a, "\""); r = a[1];
            if (r == "OK") ok++; else if (r != "SKIP") bad++ }
            END { printf "%d %d\n", ok, bad }' "$1"
    }
    set -- $(python_free_count build/meson-logs/testlog.json) $(python_free_count build-asan/meson-logs/testlog.json)
    echo "$(( $1 + $3 )) passed, $(( $2 + $4 )) failed"
    exit $status
    ;;
*)
    echo "usage: ./setup.sh [demo|test]" >&2
    exit 2
    ;;
esac
