#!/bin/sh
# The demo-kit pictures in the README: one take of every class from the bundled default
# model (seed 1) and, for comparison, the first hit of every class of its training corpus
# (make-drums seed 1, as presets/make-default-model.sh makes it), each drawn by
# `noisefloor spectrogram`, then tiled into kit.png and corpus.png with labels (the tiling
# needs /usr/bin/python3 with PIL; the single pictures do not).
#
#   presets/demo/make-demo.sh [NOISEFLOOR_BINARY]      (default: build/cli/noisefloor)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
nf=${1:-$root/build/cli/noisefloor}
work=$(mktemp -d "${TMPDIR:-/tmp}/noisefloor-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
classes="kick snare closedhat openhat tom clap cymbal"

"$nf" generate -m "$root/presets/default.safetensors" --all-classes -n 1 --seed 1 --bits 16 -o "$work"
"$nf" make-drums "$work/corpus" -n 1 --rate 16000 --length 0.5 --seed 1
for cls in $classes; do
    "$nf" spectrogram "$work/${cls}_1.wav" -o "$here/$cls.png" -W 320 -H 160 --n-fft 256 --range 80
    "$nf" spectrogram "$work/corpus/$cls/${cls}_000.wav" -o "$work/corpus_$cls.png" -W 320 -H 160 --n-fft 256 --range 80
done
/usr/bin/python3 - "$here" "$work" <<'PY'
import sys
from PIL import Image, ImageDraw
d, work = sys.argv[1], sys.argv[2]
names = ["kick", "snare", "closedhat", "openhat", "tom", "clap", "cymbal"]
def tile(paths, out):
    tiles = [Image.open(p).convert("RGB") for p in paths]
    w, h = tiles[0].size
    cols, pad, label = 4, 4, 14
    rows = (len(tiles) + cols - 1) // cols
    kit = Image.new("RGB", (cols * (w + pad) + pad, rows * (h + label + pad) + pad), "white")
    draw = ImageDraw.Draw(kit)
    for i, (n, t) in enumerate(zip(names, tiles)):
        x, y = pad + (i % cols) * (w + pad), pad + (i // cols) * (h + label + pad)
        draw.text((x, y), n, fill="black")
        kit.paste(t, (x, y + label))
    kit.quantize(32).save(out, optimize=True)
tile([f"{d}/{n}.png" for n in names], f"{d}/kit.png")
tile([f"{work}/corpus_{n}.png" for n in names], f"{d}/corpus.png")
PY
echo "wrote $here/kit.png, $here/corpus.png and one picture per class"
