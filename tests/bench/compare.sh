#!/bin/sh
# Run noisefloor's and PyTorch's reference networks back to back and print the ratios
# (torch time / noisefloor time) as the last line. Arguments go to compare.py, e.g.
#   tests/bench/compare.sh --noisefloor build/cli/noisefloor --rounds 3
exec /usr/bin/python3 "$(dirname "$0")/compare.py" "$@"
