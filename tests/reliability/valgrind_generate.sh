#!/bin/sh
# valgrind on `noisefloor generate` (and `noisefloor info`) with a tiny model: no memory
# error, no leak (definite, indirect or possible). Usage:
#   valgrind_generate.sh NOISEFLOOR MAKE_MODEL SCRATCH_DIR
set -eu
exe=$1
make_model=$2
dir=$3
rm -rf "$dir"
mkdir -p "$dir"
"$make_model" "$dir/tiny.safetensors"
# One thread: libgomp's and OpenBLAS's thread pools keep memory valgrind calls "possibly
# lost" until exit; what is checked here is noisefloor's own memory.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
vg="valgrind --error-exitcode=1 --leak-check=full --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible --track-origins=yes --quiet"
$vg "$exe" generate -m "$dir/tiny.safetensors" -o "$dir/out" -n 3 --batch 2 --steps 4 --class snare --seed 7 -j 1
n=$(ls "$dir/out" | wc -l)
if [ "$n" -ne 3 ]; then
    echo "generate wrote $n files, want 3" >&2
    exit 1
fi
$vg "$exe" generate -m "$dir/tiny.safetensors" -o "$dir/out2" -n 2 --sampler ddim --steps 3 --format flac --bits 24 -j 1
$vg "$exe" info "$dir/tiny.safetensors" > /dev/null
# A bad model file must fail cleanly (exit 1), still without leaks.
printf 'not a model' > "$dir/bad.safetensors"
set +e
$vg "$exe" generate -m "$dir/bad.safetensors" -o "$dir/out3" -n 1 -j 1 2> "$dir/bad.err"
rc=$?
set -e
if [ $rc -ne 1 ]; then
    echo "generate with a bad model: exit $rc (want 1: a clean error, no valgrind finding)" >&2
    cat "$dir/bad.err" >&2
    exit 1
fi
echo "valgrind: no errors, no leaks"
