"""Run `noisefloor bench` and its PyTorch twin (torch_nets.py) back to back, interleaved,
and print the speed ratios torch_time / noisefloor_time (above 1: noisefloor is faster)
and the peak-memory ratio; the last line holds all the ratios.

    /usr/bin/python3 tests/bench/compare.py [--noisefloor build/cli/noisefloor]
        [--nets ref-wave,ref-stft] [--rounds 3] [--repeat 3] [--threads 2]

Each round runs both implementations once per network, alternating which goes first, and
each run reports medians over --repeat calls; the figures below are medians over rounds.
Peak memory is measured in a fresh process per implementation (two training steps at
batch 8). The machine may be shared: the spread between rounds is printed so that noise
can be seen. Targets are those of issue 3.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
PY = "/usr/bin/python3"

# (net, figure) -> minimum ratio torch / noisefloor (issue 3).
TARGETS = {
    ("ref-wave", "train8"): 1.3, ("ref-stft", "train8"): 1.5, ("ref-stft", "train1"): 4.0,
    ("ref-wave", "fwd1"): 2.0, ("ref-stft", "fwd1"): 3.0, ("ref-wave", "fwd8"): 3.0,
    ("ref-wave", "ddim"): 2.0, ("ref-stft", "ddim"): 3.0, ("ref-wave", "mem8"): 1.0,
    ("ref-stft", "mem8"): 1.0,
}


def run_json(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stderr)
        raise SystemExit(f"compare: {' '.join(cmd)} failed with status {p.returncode}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def figures(r):
    """{figure: milliseconds} from one bench JSON object."""
    out = {}
    for b in r["batches"]:
        out[f"fwd{b['batch']}"] = b["forward"]["ms"]
        out[f"train{b['batch']}"] = b["train"]["ms"]
    if "ddim" in r:
        out["ddim"] = r["ddim"]["ms"]
    return out


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--noisefloor", default=None, help="the noisefloor program")
    ap.add_argument("--nets", default="ref-wave,ref-stft")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=0, help="time batch N only (default 1 and 8)")
    ap.add_argument("--no-mem", action="store_true")
    a = ap.parse_args(argv)
    exe = a.noisefloor
    if exe is None:
        build = os.environ.get("NF_BUILD_ROOT", os.path.join(ROOT, "build"))
        exe = os.path.join(build, "cli", "noisefloor")
    common = (["--batch", str(a.batch)] if a.batch else []) + ["--repeat", str(a.repeat), "--steps", str(a.steps), "--threads", str(a.threads), "--json"]
    ratios_line = []
    for net in a.nets.split(","):
        c_cmd = [exe, "bench", "--net", net, "--no-gemm"] + common
        t_cmd = [PY, os.path.join(HERE, "torch_nets.py"), "--net", net] + common
        c_runs, t_runs = [], []
        c_info = t_info = None
        for rnd in range(a.rounds):
            order = [("c", c_cmd), ("t", t_cmd)] if rnd % 2 == 0 else [("t", t_cmd), ("c", c_cmd)]
            for who, cmd in order:
                r = run_json(cmd)
                (c_runs if who == "c" else t_runs).append(figures(r))
                if who == "c":
                    c_info = r
                else:
                    t_info = r
            print(f"[{net} round {rnd + 1}] noisefloor " +
                  " ".join(f"{k} {v:.1f}" for k, v in c_runs[-1].items()) +
                  " | torch " + " ".join(f"{k} {v:.1f}" for k, v in t_runs[-1].items()) + " (ms)",
                  flush=True)
        # The two must be the same network: same parameter count, same FLOP count.
        if c_info["params"] != t_info["params"] or abs(c_info["flops_forward"] - t_info["flops_forward"]) > 1e-6 * t_info["flops_forward"]:
            print(f"WARNING: {net} differs: noisefloor {c_info['params']} parameters "
                  f"{c_info['flops_forward']:.6g} FLOP, torch {t_info['params']} parameters "
                  f"{t_info['flops_forward']:.6g} FLOP")
        print(f"{net}: {c_info['params']} parameters, {c_info['flops_forward'] * 1e-9:.3f} GFLOP "
              f"per example forward; medians over {a.rounds} rounds of medians of {a.repeat}:")
        for k in c_runs[0]:
            cs = [r[k] for r in c_runs]
            ts = [r[k] for r in t_runs]
            cm, tm = statistics.median(cs), statistics.median(ts)
            ratio = tm / cm
            tgt = TARGETS.get((net, k))
            verdict = "" if tgt is None else (f"  target {tgt}x: " + ("met" if ratio >= tgt else "MISSED"))
            print(f"  {k:<7} noisefloor {cm:10.1f} ms [{min(cs):.1f}..{max(cs):.1f}]   torch {tm:10.1f} ms "
                  f"[{min(ts):.1f}..{max(ts):.1f}]   ratio {ratio:6.2f}x{verdict}")
            ratios_line.append(f"{net}:{k}={ratio:.2f}")
        if "ddim" in c_runs[0]:
            audio_s = 16384 / 44100.0
            print(f"  real-time factor of DDIM sampling: noisefloor "
                  f"{audio_s / (statistics.median(r['ddim'] for r in c_runs) * 1e-3):.2f}x, torch "
                  f"{audio_s / (statistics.median(r['ddim'] for r in t_runs) * 1e-3):.2f}x")
        if not a.no_mem:
            cm = run_json([exe, "bench", "--net", net, "--peak-mem", "--batch", "8", "--threads",
                           str(a.threads), "--json"])
            tm = run_json([PY, os.path.join(HERE, "torch_nets.py"), "--net", net, "--peak-mem",
                           "--batch", "8", "--threads", str(a.threads), "--json"])
            ratio = tm["peak_rss_mb"] / cm["peak_rss_mb"]
            dc = cm["peak_rss_mb"] - cm["baseline_rss_mb"]
            dt = tm["peak_rss_mb"] - tm["baseline_rss_mb"]
            tgt = TARGETS.get((net, "mem8"))
            print(f"  mem8    noisefloor {cm['peak_rss_mb']:.0f} MB (+{dc:.0f} over start)   torch "
                  f"{tm['peak_rss_mb']:.0f} MB (+{dt:.0f} over start)   ratio {ratio:.2f}x "
                  f"(above start: {dt / max(dc, 1e-9):.2f}x)  target {tgt}x: "
                  + ("met" if ratio >= tgt else "MISSED"))
            ratios_line.append(f"{net}:mem8={ratio:.2f}")
    print("ratios torch/noisefloor (median; >1 = noisefloor faster or smaller): " + " ".join(ratios_line))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
