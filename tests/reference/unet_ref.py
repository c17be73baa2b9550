"""PyTorch mirror of noisefloor's 1D U-Net (model/nf_unet.h) and the fixture writer for
tests/model/test_reference.c.

The module below is the network described in model/nf_unet.h, with the same parameter
names and shapes in its state_dict, so a safetensors checkpoint moves between the two
unchanged. tests/bench/torch_nets.py imports it for the benchmark networks.

Run as a script (Debian's interpreter, CPU torch):

    /usr/bin/python3 tests/reference/unet_ref.py [--out DIR]

It builds a small network (2 levels, attention at level 1 and in the middle, 3 classes,
odd length 45, batch 2, 4 groups), and writes to DIR (default tests/reference/fixtures/):

  unet_small_weights.safetensors   the weights (float32), __metadata__ = the config
  unet_small_data.safetensors      x [B,in,L], t [B], y [B] (int32, -1 = no class),
                                   target [B,out,L], out [B,out,L], loss [1],
                                   dx [B,in,L], grad.<param> for every parameter,
                                   adamw.losses [11]: the loss before each of 10 AdamW steps
                                   (same batch every step) and after the last,
                                   adamw.grad_norms [10]: the norm clip_grad_norm_ returned,
                                   and in __metadata__ the config and the AdamW settings.

The reference values are computed in float64 from the float32 weights and inputs (so they
are the exact answer to float32 rounding of the output, not another float32 run), then
stored as float32. The loss is mean((out - target)^2) over all elements.
"""

import argparse
import math
import os
import sys
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np  # noqa: E402


@dataclass
class UNetConfig:
    """Mirrors nf_unet_config."""
    in_ch: int = 1
    out_ch: int = 1
    base: int = 32
    mults: tuple = (1, 2, 4, 4)
    blocks: int = 2
    attn: tuple = (0, 0, 0, 0)
    mid_attn: int = 0
    heads: int = 1
    groups: int = 8
    num_classes: int = 0
    dropout: float = 0.0

    def metadata(self):
        """The config as safetensors metadata (all values strings)."""
        return {
            "in_ch": str(self.in_ch), "out_ch": str(self.out_ch), "base": str(self.base),
            "n_levels": str(len(self.mults)),
            "mults": ",".join(str(m) for m in self.mults),
            "blocks": str(self.blocks),
            "attn": ",".join(str(int(a)) for a in self.attn),
            "mid_attn": str(int(self.mid_attn)), "heads": str(self.heads),
            "groups": str(self.groups), "num_classes": str(self.num_classes),
            "dropout": repr(float(self.dropout)),
        }


def sinusoidal(t, dim):
    """emb = [sin(t f_i), cos(t f_i)], f_i = 10000^(-i/half), i < half = dim/2
    (Vaswani et al. 2017, sec. 3.5, as used for diffusion steps by Ho et al. 2020)."""
    half = dim // 2
    i = torch.arange(half, dtype=torch.float64, device=t.device)
    f = torch.pow(10000.0, -i / half).to(t.dtype)
    a = t[:, None] * f[None, :]
    return torch.cat([torch.sin(a), torch.cos(a)], dim=1)


def nearest_resize(h, length):
    """Nearest-neighbour resize along time: out[j] = in[floor(j * Lin / Lout)]
    (PyTorch's 'nearest' rule, computed in integers so that it is exact for any length)."""
    lin = h.shape[-1]
    if length == 2 * lin:
        return F.interpolate(h, size=length, mode="nearest")
    idx = (torch.arange(length) * lin) // length
    return h.index_select(-1, idx.to(h.device))


class TimeEmbed(nn.Module):
    def __init__(self, c0):
        super().__init__()
        self.c0 = c0
        self.lin1 = nn.Linear(c0, 4 * c0)
        self.lin2 = nn.Linear(4 * c0, 4 * c0)

    def forward(self, t):
        return self.lin2(F.silu(self.lin1(sinusoidal(t, self.c0))))


class ResBlock(nn.Module):
    def __init__(self, cin, cout, temb, groups, dropout):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-5)
        self.conv1 = nn.Conv1d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-5)
        self.conv2 = nn.Conv1d(cout, cout, 3, padding=1)
        self.dropout = dropout
        if cin != cout:
            self.skip = nn.Conv1d(cin, cout, 1)
        else:
            self.skip = None

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None]
        h = F.silu(self.norm2(h))
        if self.dropout > 0:
            h = F.dropout(h, self.dropout, self.training)
        h = self.conv2(h)
        return h + (self.skip(x) if self.skip is not None else x)


class Attention(nn.Module):
    """out = x + proj(MHA(qkv(GN(x)))): q, k, v are channel blocks [0,C), [C,2C), [2C,3C)
    of the qkv conv's output; head h takes channels [h d, (h+1) d) of each (d = C/heads);
    softmax(q^T k / sqrt(d)) over key time (Vaswani et al. 2017, eq. 1)."""

    def __init__(self, c, heads, groups):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, c, eps=1e-5)
        self.qkv = nn.Conv1d(c, 3 * c, 1)
        self.proj = nn.Conv1d(c, c, 1)

    def forward(self, x):
        b, c, length = x.shape
        d = c // self.heads
        qkv = self.qkv(self.norm(x))
        q, k, v = qkv.split(c, dim=1)
        q = q.reshape(b * self.heads, d, length)
        k = k.reshape(b * self.heads, d, length)
        v = v.reshape(b * self.heads, d, length)
        w = torch.bmm(q.transpose(1, 2), k) / math.sqrt(d)      # [bh, Lq, Lk]
        w = torch.softmax(w, dim=-1)
        o = torch.bmm(v, w.transpose(1, 2))                        # [bh, d, Lq]
        return x + self.proj(o.reshape(b, c, length))


class Level(nn.Module):
    pass


class Middle(nn.Module):
    pass


class UNet1D(nn.Module):
    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        c0, temb, g = cfg.base, 4 * cfg.base, cfg.groups
        nl = len(cfg.mults)
        ch = [c0 * m for m in cfg.mults]
        self.time = TimeEmbed(c0)
        if cfg.num_classes > 0:
            self.class_emb = nn.Embedding(cfg.num_classes + 1, temb)
        else:
            self.class_emb = None
        self.in_conv = nn.Conv1d(cfg.in_ch, c0, 3, padding=1)

        self.down = nn.ModuleList()
        c = c0
        for i in range(nl):
            lev = Level()
            lev.res = nn.ModuleList()
            for j in range(cfg.blocks):
                lev.res.append(ResBlock(c, ch[i], temb, g, cfg.dropout))
                c = ch[i]
            if cfg.attn[i]:
                lev.attn = nn.ModuleList([Attention(c, cfg.heads, g) for _ in range(cfg.blocks)])
            if i < nl - 1:
                lev.downsample = nn.Conv1d(c, c, 3, stride=2, padding=1)
            self.down.append(lev)

        self.mid = Middle()
        self.mid.res = nn.ModuleList([ResBlock(c, c, temb, g, cfg.dropout),
                                      ResBlock(c, c, temb, g, cfg.dropout)])
        if cfg.mid_attn:
            self.mid.attn = Attention(c, cfg.heads, g)

        ups = [None] * nl
        for i in reversed(range(nl)):
            lev = Level()
            lev.res = nn.ModuleList()
            for j in range(cfg.blocks):
                cin = c + ch[i] if j == 0 else ch[i]
                lev.res.append(ResBlock(cin, ch[i], temb, g, cfg.dropout))
                c = ch[i]
            if cfg.attn[i]:
                lev.attn = nn.ModuleList([Attention(c, cfg.heads, g) for _ in range(cfg.blocks)])
            if i > 0:
                lev.upsample = nn.Conv1d(c, c, 3, padding=1)
            ups[i] = lev
        self.up = nn.ModuleList(ups)

        self.out_norm = nn.GroupNorm(g, c0, eps=1e-5)
        self.out_conv = nn.Conv1d(c0, cfg.out_ch, 3, padding=1)

    def embed(self, t, y):
        emb = self.time(t)
        if self.class_emb is not None:
            if y is None:
                y = torch.full((t.shape[0],), -1, dtype=torch.long)
            idx = torch.where(y < 0, torch.full_like(y, self.cfg.num_classes), y).long()
            emb = emb + self.class_emb(idx)
        return emb

    def forward(self, x, t, y=None):
        cfg = self.cfg
        nl = len(cfg.mults)
        emb = self.embed(t, y)
        h = self.in_conv(x)
        skips = []
        for i in range(nl):
            lev = self.down[i]
            for j in range(cfg.blocks):
                h = lev.res[j](h, emb)
                if cfg.attn[i]:
                    h = lev.attn[j](h)
            skips.append(h)
            if i < nl - 1:
                h = lev.downsample(h)
        h = self.mid.res[0](h, emb)
        if cfg.mid_attn:
            h = self.mid.attn(h)
        h = self.mid.res[1](h, emb)
        for i in reversed(range(nl)):
            lev = self.up[i]
            h = torch.cat([h, skips[i]], dim=1)
            for j in range(cfg.blocks):
                h = lev.res[j](h, emb)
                if cfg.attn[i]:
                    h = lev.attn[j](h)
            if i > 0:
                h = lev.upsample(nearest_resize(h, skips[i - 1].shape[-1]))
        return self.out_conv(F.silu(self.out_norm(h)))


def unet_flops(cfg: UNetConfig, length: int) -> float:
    """Multiply-add FLOPs (x2) of the convolutions, linears and attention products of one
    forward pass for one example (elementwise work not counted)."""
    fl = 0.0
    c0, temb = cfg.base, 4 * cfg.base
    ch = [c0 * m for m in cfg.mults]
    nl = len(ch)

    def conv(cin, cout, k, lout):
        return 2.0 * cin * cout * k * lout

    def res(cin, cout, ln):
        f = conv(cin, cout, 3, ln) + conv(cout, cout, 3, ln) + 2.0 * temb * cout
        return f + (conv(cin, cout, 1, ln) if cin != cout else 0.0)

    def att(c, ln):
        return conv(c, 3 * c, 1, ln) + conv(c, c, 1, ln) + 2.0 * 2.0 * c * ln * ln

    fl += 2.0 * c0 * temb + 2.0 * temb * temb
    lens = [length]
    for i in range(1, nl):
        lens.append((lens[-1] + 1) // 2)
    fl += conv(cfg.in_ch, c0, 3, length)
    c = c0
    for i in range(nl):
        for j in range(cfg.blocks):
            fl += res(c, ch[i], lens[i])
            c = ch[i]
            if cfg.attn[i]:
                fl += att(c, lens[i])
        if i < nl - 1:
            fl += conv(c, c, 3, lens[i + 1])
    fl += 2 * res(c, c, lens[-1]) + (att(c, lens[-1]) if cfg.mid_attn else 0.0)
    for i in reversed(range(nl)):
        for j in range(cfg.blocks):
            fl += res(c + ch[i] if j == 0 else ch[i], ch[i], lens[i])
            c = ch[i]
            if cfg.attn[i]:
                fl += att(c, lens[i])
        if i > 0:
            fl += conv(c, c, 3, lens[i - 1])
    fl += conv(c0, cfg.out_ch, 3, length)
    return fl


def state_to_numpy(model):
    return {k: v.detach().to(torch.float32).cpu().numpy().copy() for k, v in model.state_dict().items()}


def load_numpy_state(model, tensors, strict=True):
    sd = model.state_dict()
    if strict and set(sd) != set(tensors):
        missing = sorted(set(sd) - set(tensors))
        extra = sorted(set(tensors) - set(sd))
        raise ValueError(f"state mismatch: missing {missing[:5]}, unexpected {extra[:5]}")
    with torch.no_grad():
        for k, v in sd.items():
            a = torch.from_numpy(np.ascontiguousarray(tensors[k]))
            if tuple(a.shape) != tuple(v.shape):
                raise ValueError(f"{k}: shape {tuple(a.shape)} != {tuple(v.shape)}")
            v.copy_(a.to(v.dtype))


# ---------------------------------------------------------------------------------------
# Fixture

SMALL = UNetConfig(in_ch=2, out_ch=2, base=8, mults=(1, 2), blocks=2, attn=(0, 1),
                   mid_attn=1, heads=2, groups=4, num_classes=3, dropout=0.0)
BATCH, LENGTH = 2, 45
ADAMW = dict(lr=3e-3, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
CLIP = 0.5
STEPS = 10


def make_fixture(outdir):
    torch.manual_seed(1234)
    model = UNet1D(SMALL)
    # Move GroupNorm affines off (1, 0) so their gradients and the affine paths are tested.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".norm" in name or name.startswith("out_norm"):
                if name.endswith("weight"):
                    p.copy_(1.0 + 0.2 * torch.randn_like(p))
                else:
                    p.copy_(0.2 * torch.randn_like(p))
    weights = state_to_numpy(model)
    os.makedirs(outdir, exist_ok=True)
    meta = SMALL.metadata()
    meta["format"] = "noisefloor-reference-fixture"
    meta["version"] = "1"
    wpath = os.path.join(outdir, "unet_small_weights.safetensors")
    safetensors_np.save(wpath, weights, meta)

    # Reload what was written, into a float64 copy: the reference is computed from exactly
    # the float32 numbers in the file.
    loaded, lmeta = safetensors_np.load(wpath)
    assert lmeta == meta, "metadata did not round-trip"
    ref = UNet1D(SMALL).double()
    load_numpy_state(ref, loaded)

    g = torch.Generator().manual_seed(99)
    x = torch.randn(BATCH, SMALL.in_ch, LENGTH, generator=g).float()
    target = torch.randn(BATCH, SMALL.out_ch, LENGTH, generator=g).float()
    t = torch.tensor([5.0, 250.0], dtype=torch.float32)
    y = torch.tensor([1, -1], dtype=torch.int32)

    xd = x.double().requires_grad_(True)
    out = ref(xd, t.double(), y.long())
    loss = ((out - target.double()) ** 2).mean()
    loss.backward()
    grads = {f"grad.{k}": p.grad.detach().float().numpy().copy() for k, p in ref.named_parameters()}
    assert set(k[5:] for k in grads) == set(weights), "every tensor is a parameter"

    # A float32 forward from the same file, to show what float32 rounding alone costs.
    m32 = UNet1D(SMALL)
    load_numpy_state(m32, loaded)
    with torch.no_grad():
        o32 = m32(x, t, y.long())
    f32_err = (o32.double() - out.detach()).abs().max().item() / out.detach().abs().max().item()

    # 10 AdamW steps on the same batch, with global-norm clipping, in float64.
    opt = torch.optim.AdamW(ref.parameters(), **ADAMW)
    losses, norms = [], []
    for step in range(STEPS):
        opt.zero_grad()
        o = ref(x.double(), t.double(), y.long())
        lo = ((o - target.double()) ** 2).mean()
        lo.backward()
        n = torch.nn.utils.clip_grad_norm_(ref.parameters(), CLIP)
        losses.append(lo.item())
        norms.append(n.item())
        opt.step()
    with torch.no_grad():
        o = ref(x.double(), t.double(), y.long())
        losses.append(((o - target.double()) ** 2).mean().item())

    data = {
        "x": x.numpy(), "t": t.numpy(), "y": y.numpy(), "target": target.numpy(),
        "out": out.detach().float().numpy(),
        "loss": np.array([loss.item()], dtype=np.float32),
        "dx": xd.grad.float().numpy(),
        "adamw.losses": np.array(losses, dtype=np.float32),
        "adamw.grad_norms": np.array(norms, dtype=np.float32),
    }
    data.update(grads)
    dmeta = dict(meta)
    dmeta.update({
        "batch": str(BATCH), "length": str(LENGTH),
        "loss": "mean((out - target)^2)",
        "adamw.lr": repr(ADAMW["lr"]), "adamw.beta1": repr(ADAMW["betas"][0]),
        "adamw.beta2": repr(ADAMW["betas"][1]), "adamw.eps": repr(ADAMW["eps"]),
        "adamw.weight_decay": repr(ADAMW["weight_decay"]), "adamw.clip": repr(CLIP),
        "adamw.steps": str(STEPS),
        "torch": torch.__version__,
    })
    dpath = os.path.join(outdir, "unet_small_data.safetensors")
    safetensors_np.save(dpath, data, dmeta)

    nparam = sum(p.numel() for p in ref.parameters())
    print(f"unet_ref: {len(weights)} tensors, {nparam} parameters, "
          f"{unet_flops(SMALL, LENGTH) / 1e6:.2f} MFLOP/example at L={LENGTH}")
    print(f"unet_ref: loss {loss.item():.6f}; float32 forward differs from float64 by "
          f"{f32_err:.2e} (relative to max |out|)")
    print("unet_ref: adamw losses " + " ".join(f"{v:.5f}" for v in losses))
    print("unet_ref: grad norms   " + " ".join(f"{v:.4f}" for v in norms))
    for p in (wpath, dpath):
        print(f"unet_ref: wrote {p} ({os.path.getsize(p)} bytes)")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "fixtures"))
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    make_fixture(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
