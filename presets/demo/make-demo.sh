#!/bin/sh
# The demo-kit pictures in the README: one take of every class from the bundled default
# model (seed 1), each drawn by `noisefloor spectrogram`, then tiled into kit.png with
# labels (the tiling needs /usr/bin/python3 with PIL; the single pictures do not).
#
#   presets/demo/make-demo.sh [NOISEFLOOR_BINARY]      (default: build/cli/noisefloor)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
nf=${1:-$root/build/cli/noisefloor}
work=$(mktemp -d "${TMPDIR:-/tmp}/noisefloor-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT

"$nf" generate -m "$root/presets/default.safetensors" --all-classes -n 1 --seed 1 --bits 16 -o "$work"
for cls in kick snare closedhat openhat tom clap cymbal; do
    "$nf" spectrogram "$work/${cls}_1.wav" -o "$here/$cls.png" -W 320 -H 160 --n-fft 256 --range 80
done
/usr/bin/python3 - "$here" <<'PY'
import sys
from PIL import Image, ImageDraw
d = sys.argv[1]
names = ["kick", "snare", "closedhat", "openhat", "tom", "clap", "cymbal"]
tiles = [Image.open(f"{d}/{n}.png").convert("RGB") for n in names]
w, h = tiles[0].size
cols, pad, label = 4, 4, 14
rows = (len(tiles) + cols - 1) // cols
kit = Image.new("RGB", (cols * (w + pad) + pad, rows * (h + label + pad) + pad), "white")
draw = ImageDraw.Draw(kit)
for i, (n, t) in enumerate(zip(names, tiles)):
    x, y = pad + (i % cols) * (w + pad), pad + (i // cols) * (h + label + pad)
    draw.text((x, y), n, fill="black")
    kit.paste(t, (x, y + label))
kit.quantize(32).save(f"{d}/kit.png", optimize=True)
PY
echo "wrote $here/kit.png and one picture per class"
