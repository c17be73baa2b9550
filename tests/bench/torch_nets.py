"""The benchmark networks of issue 3 (ref-wave, ref-stft) in PyTorch, timed exactly as
`noisefloor bench` times them (model/bench.c):

  forward: model(x, t) at batch B under torch.inference_mode().
  train:   a DDPM training step (Ho et al. 2020, Algorithm 1): t uniform in [0, 1000),
           eps ~ N(0, I), x_t = sqrt(abar) x0 + sqrt(1 - abar) eps on the linear beta
           schedule 1e-4..0.02; forward; mse(out, eps); backward; clip_grad_norm_(1.0);
           AdamW(lr 1e-4, weight decay 0.01) step.
  ddim:    one example, 50 deterministic DDIM steps (Song et al. 2021, eq. 12, eta 0) on
           evenly spaced steps; for ref-stft then torch.istft (n_fft 512, hop 128, Hann,
           centred) of the 514 channels as 257 complex bins.
Each figure is the median of --repeat timed calls after one untimed warm-up.

    /usr/bin/python3 tests/bench/torch_nets.py --net ref-wave [--batch 8] [--json]
    /usr/bin/python3 tests/bench/torch_nets.py --net ref-stft --peak-mem --batch 8

--peak-mem builds the network and runs two training steps, then prints the process's
resident-set high-water mark (ru_maxrss), so run it in a fresh process (compare.sh does).
The network is the module of tests/reference/unet_ref.py, the mirror of model/nf_unet.h.
"""

import argparse
import json
import math
import os
import resource
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from unet_ref import UNet1D, UNetConfig, unet_flops  # noqa: E402

T_TRAIN = 1000
AUDIO_LENGTH = 16384


def net_by_name(name):
    """(config, input length, stft (n_fft, hop) or None), as issue 3 defines them."""
    if name == "ref-wave":
        cfg = UNetConfig(in_ch=1, out_ch=1, base=32, mults=(1, 2, 4, 4), blocks=2,
                         attn=(0, 0, 0, 0), mid_attn=0, heads=1, groups=8, num_classes=0)
        return cfg, AUDIO_LENGTH, None
    if name == "ref-stft":
        n_fft, hop = 512, 128
        ch = 2 * (n_fft // 2 + 1)
        cfg = UNetConfig(in_ch=ch, out_ch=ch, base=128, mults=(1, 2, 2), blocks=2,
                         attn=(0, 0, 0), mid_attn=0, heads=1, groups=8, num_classes=0)
        return cfg, 1 + AUDIO_LENGTH // hop, (n_fft, hop)
    raise SystemExit(f"torch_nets: unknown network {name!r} (ref-wave, ref-stft)")


def linear_alpha_bar():
    """Ho et al. sec. 4: beta linear 1e-4..0.02 over T = 1000; abar = cumprod(1 - beta)."""
    i = torch.arange(T_TRAIN, dtype=torch.float64)
    beta = 1e-4 + (0.02 - 1e-4) * i / (T_TRAIN - 1)
    return torch.cumprod(1.0 - beta, 0)


class Bench:
    def __init__(self, name, batch):
        self.cfg, self.length, self.stft = net_by_name(name)
        torch.manual_seed(1)
        self.model = UNet1D(self.cfg)
        self.batch = batch
        self.x0 = torch.randn(batch, self.cfg.in_ch, self.length)
        self.t = torch.full((batch,), 500.0)
        self.abar = linear_alpha_bar()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4, weight_decay=0.01)

    def forward(self):
        with torch.inference_mode():
            return self.model(self.x0, self.t)

    def train_step(self):
        b = self.batch
        ti = torch.randint(0, T_TRAIN, (b,))
        eps = torch.randn_like(self.x0)
        ab = self.abar[ti].float()[:, None, None]
        xt = ab.sqrt() * self.x0 + (1.0 - ab).sqrt() * eps      # Ho et al. eq. 4
        out = self.model(xt, ti.float())
        loss = F.mse_loss(out, eps)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        return loss

    def ddim(self, steps):
        def step_t(k):
            return int(math.floor(k * (T_TRAIN - 1) / (steps - 1) + 0.5)) if steps > 1 else T_TRAIN - 1

        with torch.inference_mode():
            x = torch.randn(1, self.cfg.in_ch, self.length)
            for k in reversed(range(steps)):
                ti = step_t(k)
                a = self.abar[ti].item()
                ap = self.abar[step_t(k - 1)].item() if k > 0 else 1.0
                e = self.model(x, torch.tensor([float(ti)]))
                # x_prev = sqrt(ap) x0_hat + sqrt(1 - ap) e  (Song et al. eq. 12, sigma 0)
                c1 = math.sqrt(ap / a)
                c2 = math.sqrt(1.0 - ap) - math.sqrt(ap) * math.sqrt(1.0 - a) / math.sqrt(a)
                x = c1 * x + c2 * e
            if self.stft is not None:
                n_fft, hop = self.stft
                bins = n_fft // 2 + 1
                spec = torch.complex(x[0, :bins], x[0, bins:])
                return torch.istft(spec, n_fft, hop, window=torch.hann_window(n_fft), center=True,
                                   length=AUDIO_LENGTH)
            return x


def timed(fn, repeat):
    fn()  # warm-up
    sec = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sec.append(time.perf_counter() - t0)
    return statistics.median(sec), min(sec)


def time_entry(med, mn, batch, flops):
    return {"ms": med * 1e3, "ms_min": mn * 1e3, "examples_per_s": batch / med,
            "gflops": flops / med * 1e-9}


def main(argv):
    ap = argparse.ArgumentParser(description="PyTorch side of the noisefloor benchmark")
    ap.add_argument("--net", default="ref-wave")
    ap.add_argument("--batch", type=int, default=0, help="time batch N only (default 1 and 8)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--steps", type=int, default=50, help="DDIM steps (0 skips sampling)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peak-mem", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)

    if a.peak_mem:
        batch = a.batch or 8
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        b = Bench(a.net, batch)
        for _ in range(2):
            b.train_step()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        r = {"implementation": "torch", "net": a.net, "batch": batch, "peak_rss_mb": peak,
             "baseline_rss_mb": base}
        if a.json:
            print(json.dumps(r))
        else:
            print(f"net {a.net} batch {batch}: peak resident memory {peak:.1f} MB "
                  f"({base:.1f} MB before the network)")
        return 0

    cfg, length, stft = net_by_name(a.net)
    flops = unet_flops(cfg, length)
    batches = [a.batch] if a.batch else [1, 8]
    res = {"implementation": "torch", "torch": torch.__version__, "net": a.net, "length": length,
           "flops_forward": flops, "threads": torch.get_num_threads(), "repeat": a.repeat,
           "batches": []}
    for bs in batches:
        b = Bench(a.net, bs)
        res["params"] = sum(p.numel() for p in b.model.parameters())
        f = time_entry(*timed(b.forward, a.repeat), bs, flops * bs)
        t = time_entry(*timed(b.train_step, a.repeat), bs, 3 * flops * bs)
        res["batches"].append({"batch": bs, "forward": f, "train": t})
        del b
    if a.steps > 0:
        b = Bench(a.net, 1)
        med, mn = timed(lambda: b.ddim(a.steps), a.repeat)
        res["ddim"] = {"steps": a.steps, "ms": med * 1e3, "ms_min": mn * 1e3,
                       "realtime": (AUDIO_LENGTH / 44100.0) / med,
                       "how": "torch DDIM loop (eta 0)" + (" + torch.istft" if stft else "")}
    if a.json:
        print(json.dumps(res))
    else:
        print(f"net {a.net} (torch {torch.__version__}): {res['params']} parameters, length "
              f"{length}, {flops * 1e-9:.3f} GFLOP per example forward; "
              f"{res['threads']} threads; medians of {a.repeat}")
        print(f"{'batch':<8} {'what':<8} {'ms':>12} {'examples/s':>14} {'GFLOP/s':>10}")
        for e in res["batches"]:
            for w in ("forward", "train"):
                v = e[w]
                print(f"{e['batch']:<8} {w:<8} {v['ms']:12.2f} {v['examples_per_s']:14.2f} "
                      f"{v['gflops']:10.1f}")
        if "ddim" in res:
            d = res["ddim"]
            print(f"sampling: {d['steps']} DDIM steps, one example: {d['ms']:.1f} ms, "
                  f"{d['realtime']:.2f}x real time ({d['how']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
