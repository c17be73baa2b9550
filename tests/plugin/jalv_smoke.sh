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
# JACK keeps a registry of running servers in /dev/shm with room for 8 names, and a
# server that dies without unregistering keeps its slot until the next reboot; each run
# here uses its own server name, so after a few unclean exits no JACK server could start
# on the machine ("Too many servers already active"). As root (CI), run in a private
# mount namespace with a /dev/shm of its own: nothing is left behind, and nothing left
# behind by others gets in the way. Elsewhere, or where namespaces are not allowed, run
# as before.
if [ -z "${NF_SMOKE_PRIVATE_SHM:-}" ] && [ "$(id -u)" = 0 ] && unshare --mount true 2>/dev/null; then
    NF_SMOKE_PRIVATE_SHM=1
    export NF_SMOKE_PRIVATE_SHM
    exec unshare --mount --propagation private \
        sh -c 'mount -t tmpfs -o mode=1777 nf-smoke-shm /dev/shm 2>/dev/null || true; exec "$0" "$@"' "$0" "$@"
fi
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
    # Clients first, the server last (pids holds the server first), so that it can
    # unregister cleanly.
    rev=""
    for p in $pids; do rev="$p $rev"; done
    for p in $rev; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
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
