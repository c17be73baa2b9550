#!/usr/bin/python3
"""Write the seed inputs of fuzz_plugin (its byte layout is described in fuzz_plugin.c):
a session that loads the test model and plays notes at each host rate, a restore of a
saved state with a takes index, patch:Get, and NaN / out-of-range controls."""
import os
import struct
import sys

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "plugin")
os.makedirs(out, exist_ok=True)


def f(x):
    return struct.pack("<f", x)


def controls(gain=0.0, vel=1.0, seed=1.0, steps=2.0, guid=1.0, var=0.5, pool=1.0, tune=0.0, length=1.0, new=0.0):
    return b"".join(f(v) for v in (gain, vel, seed, steps, guid, var, pool, tune, length, new))


def set_model(choice=0):
    # kind 1 (Object), then make_object: otype Set, 2 properties:
    # property = URID nf:model (type byte 8|0), value = Path (type byte 1) -> pick_path(choice)
    return bytes([1, 0, 2, 0, 8, 1, 1, choice])


def note(n=36, vel=100):
    return bytes([0, n - 35, vel])  # kind 0: note-on on channel 10


def cycle(frames, events, ctl_changes=b"\x00" * 10, damage=0):
    body = bytes([frames & 255, frames >> 8, len(events)])
    for dt, ev in events:
        body += bytes([dt]) + ev
    return body + ctl_changes + bytes([damage])


def session(rate_i, flags, ctl, cycles, restore=b""):
    b = bytes([rate_i, flags, 0]) + ctl + restore + bytes([len(cycles) - 1])
    return b + b"".join(cycles)


seeds = {}
for ri, name in enumerate(["8k", "44k", "96k", "384k"]):
    seeds["play-" + name] = session(ri, 0, controls(), [
        cycle(256, [(0, set_model(0))]),
        cycle(256, []), cycle(256, []),
        cycle(512, [(0, note(36)), (50, note(38, 127))]),
        cycle(1023, [(10, note(36, 1))]),
    ])
seeds["nan-controls"] = session(1, 0, controls(float("nan"), float("inf"), -1e30, float("nan"), 1e9, -5, 99, float("-inf"), float("nan"), 1), [
    cycle(256, [(0, set_model(0))]), cycle(256, []), cycle(512, [(0, note(40))]),
])
seeds["model-deleted"] = session(0, 0, controls(), [
    cycle(256, [(0, set_model(0))]), cycle(256, [], damage=1), cycle(256, [(0, set_model(0)), (1, note(36))]),
])
seeds["model-garbage"] = session(0, 0, controls(), [
    cycle(256, [(0, set_model(0))]), cycle(256, [], damage=2), cycle(256, [(0, set_model(2))]),
])
seeds["patch-get"] = session(2, 0, controls(), [
    cycle(128, [(0, set_model(0)), (0, bytes([1, 1, 0]))]), cycle(128, [(0, bytes([1, 1, 0]))]),
])
# restore: model path (key 0|8, type Path, pick_path 0), seed (Long), steps (Int), pool, takes index
idx = b"noisefloor-takes 1\nrate 8000\nslots 2\ncounter 0 5\ntake 0 0 17 t.wav\nanchor 1 t.wav\n"
restore = bytes([5]) + bytes([8, 0, 0]) + bytes([2, 2, 8]) + struct.pack("<q", 42) \
    + bytes([3, 3, 4]) + struct.pack("<i", 3) + bytes([6, 3, 4]) + struct.pack("<i", 2) \
    + bytes([1 | 8, 0, (len(idx) + 1) // 2]) + idx + (b"\n" if len(idx) % 2 else b"")
seeds["restore"] = session(0, 2, controls(), [cycle(256, []), cycle(256, [(0, note(36))])], restore)
for k, v in seeds.items():
    with open(os.path.join(out, k), "wb") as fh:
        fh.write(v)
