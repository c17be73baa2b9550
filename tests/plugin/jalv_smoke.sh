#!/bin/sh
# Smoke test in a real host: jalv on a dummy JACK server plays MIDI from jack_midiseq into
# noisefloor.lv2 and jack_rec records its output; the WAV must be audible and finite.
# jalv runs in real time with a threaded worker, so this is a smoke test, not a golden
# file. The plugin's state (the model and its rendered takes) is prepared by nf_lv2host
# and loaded with jalv -l, so jalv plays at once.
#
#   jalv_smoke.sh <nf_lv2host> <make_test_model> <scratch-dir>
# Environment: LV2_PATH must contain the directory holding noisefloor.lv2.
set -eu
host=$1
maker=$2
dir=$3
uri=https://noisefloor.dev/lv2/noisefloor

rm -rf "$dir"
mkdir -p "$dir"
JACK_DEFAULT_SERVER="nf-smoke-$$"
export JACK_DEFAULT_SERVER
JACK_NO_AUDIO_RESERVATION=1
export JACK_NO_AUDIO_RESERVATION

pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    for p in $pids; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

"$maker" "$dir/kit.model" "kick,snare,closed_hat" 16000 4000
"$host" savestate "$dir/kit.model" "$dir/state"

jackd --no-realtime -n "$JACK_DEFAULT_SERVER" -d dummy -r 48000 -p 256 >"$dir/jackd.log" 2>&1 &
pids="$!"
jack_wait -w -t 10 >/dev/null

# jalv quits when its stdin closes: feed it from a FIFO that this script holds open
mkfifo "$dir/stdin"
exec 3<>"$dir/stdin"
jalv -n inst -t -l "$dir/state" "$uri" <"$dir/stdin" >"$dir/jalv.log" 2>&1 &
jalv_pid=$!
pids="$pids $jalv_pid"
i=0
until jack_lsp 2>/dev/null | grep -q '^inst:out_l$'; do
    i=$((i + 1))
    if [ $i -gt 100 ]; then
        echo "jalv did not come up"; cat "$dir/jalv.log"; exit 1
    fi
    sleep 0.1
done

# a kick every half second: 24000 samples per loop, note 36 at 0 for 8000 samples
jack_midiseq seq 24000 0 36 8000 12000 42 4000 >"$dir/midiseq.log" 2>&1 &
pids="$pids $!"
i=0
until jack_lsp 2>/dev/null | grep -q '^seq:out$'; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "jack_midiseq did not come up"; exit 1; }
    sleep 0.1
done
jack_connect seq:out inst:control

jack_rec -f "$dir/out.wav" -d 3 -b 32 inst:out_l inst:out_r >"$dir/rec.log" 2>&1
if ! kill -0 "$jalv_pid" 2>/dev/null; then
    echo "jalv died while playing"; cat "$dir/jalv.log"; exit 1
fi
if grep -i "error" "$dir/jalv.log"; then
    echo "jalv logged an error"; exit 1
fi
"$host" wavstats "$dir/out.wav" 0.01
