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

Cross-language model files (tests/model/test_xlang.c), in the full noisefloor model-file
format of model/nf_checkpoint.h (weights, "ema.<name>" weights, and the metadata keys
format, format_version, noisefloor.config, noisefloor.model written byte for byte as
model/checkpoint.c writes them):

    /usr/bin/python3 tests/reference/unet_ref.py write-py-model [--out DIR]
        writes py_model.safetensors (the small network above with its own weights) and
        py_model_data.safetensors (x [3,in,L], t [3], y [3], and the float64 outputs of
        the raw weights, "out", and of the EMA weights, "out.ema", stored as float32).
    /usr/bin/python3 tests/reference/unet_ref.py check-c MODEL OUTPUTS [MODEL OUTPUTS ...]
        reads a model file written by nf_checkpoint_save (F32 or F16) with safetensors_np,
        builds the network from its noisefloor.config, and compares the outputs the C
        network gave ("out", and "out.ema" when the file has EMA weights, on the inputs
        x, t, y stored in OUTPUTS) with torch's float64 forward (relative error
        max|c - ref| / max|ref| <= 1e-4). Also checks the metadata and that the C JSON is
        byte for byte what config_to_json / model_desc_to_json write. Exit status 1 on
        any mismatch.
"""

import argparse
import json
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


# ---------------------------------------------------------------------------------------
# Cross-language model files (tests/model/test_xlang.c)
#
# The noisefloor model file (model/nf_checkpoint.h) is a safetensors file holding the
# network's parameters under their state_dict names, optionally the EMA weights under
# "ema.<name>", and four metadata keys: "format" = "noisefloor", "format_version" = "1",
# "noisefloor.config" (nf_unet_config_to_json) and "noisefloor.model"
# (nf_model_desc_to_json). The functions below write and read that JSON byte for byte as
# model/checkpoint.c does, so a file written here is the file nf_checkpoint_save would
# write for the same weights and description.

CKPT_FORMAT_VERSION = 1
PY_MODEL = "py_model.safetensors"
PY_MODEL_DATA = "py_model_data.safetensors"


def _c_g(v, lo, hi, same):
    """The shortest of C's "%.{lo}g" .. "%.{hi}g" that reads back as v (model/json.c
    nf_jw_double: 15..17 digits; model/checkpoint.c jw_float: 6..9 digits, as float32)."""
    if not math.isfinite(v):
        raise ValueError(f"{v} has no JSON form")
    s = ""
    for prec in range(lo, hi + 1):
        s = "%.*g" % (prec, v)
        if same(s):
            break
    return s


def _json_f32(v):
    v32 = np.float32(v)
    return _c_g(float(v32), 6, 9, lambda s: np.float32(float(s)) == v32)


def _json_f64(v):
    return _c_g(float(v), 15, 17, lambda s: float(s) == float(v))


def _json_str(s):
    # model/json.c put_escaped: '"', '\\', \n \r \t \b \f and other bytes < 0x20 as
    # \u00xx, everything else (UTF-8 included) as is -- json.dumps(ensure_ascii=False).
    return json.dumps(s, ensure_ascii=False)


def _json_obj(pairs):
    return "{" + ",".join(_json_str(k) + ":" + v for k, v in pairs) + "}"


def _json_arr(items):
    return "[" + ",".join(items) + "]"


def config_to_json(cfg):
    """nf_unet_config_to_json, byte for byte."""
    n = len(cfg.mults)
    return _json_obj([
        ("in_ch", str(cfg.in_ch)), ("out_ch", str(cfg.out_ch)), ("base", str(cfg.base)),
        ("n_levels", str(n)), ("mults", _json_arr(str(int(m)) for m in cfg.mults)),
        ("blocks", str(cfg.blocks)), ("attn", _json_arr(str(int(a)) for a in cfg.attn)),
        ("mid_attn", str(int(cfg.mid_attn))), ("heads", str(cfg.heads)),
        ("groups", str(cfg.groups)), ("num_classes", str(cfg.num_classes)),
        ("dropout", _json_f32(cfg.dropout)),
    ])


def _need(obj, key, kind, what):
    if key not in obj:
        raise ValueError(f"{what}: key {key!r} is missing")
    v = obj[key]
    ok = {"int": isinstance(v, int) and not isinstance(v, bool),
          "num": isinstance(v, (int, float)) and not isinstance(v, bool),
          "str": isinstance(v, str), "bool": isinstance(v, bool),
          "list": isinstance(v, list), "obj": isinstance(v, dict)}[kind]
    if not ok:
        raise ValueError(f"{what}: key {key!r} is not of type {kind} ({v!r})")
    return v


def config_from_json(text):
    """nf_unet_config_from_json: every key required, with its type."""
    o = json.loads(text)
    w = "noisefloor.config"
    n = _need(o, "n_levels", "int", w)
    mults = _need(o, "mults", "list", w)
    attn = _need(o, "attn", "list", w)
    if len(mults) != n or len(attn) != n:
        raise ValueError(f"{w}: mults/attn do not have n_levels = {n} entries")
    return UNetConfig(
        in_ch=_need(o, "in_ch", "int", w), out_ch=_need(o, "out_ch", "int", w),
        base=_need(o, "base", "int", w), mults=tuple(int(m) for m in mults),
        blocks=_need(o, "blocks", "int", w), attn=tuple(int(a) for a in attn),
        mid_attn=_need(o, "mid_attn", "int", w), heads=_need(o, "heads", "int", w),
        groups=_need(o, "groups", "int", w), num_classes=_need(o, "num_classes", "int", w),
        dropout=float(_need(o, "dropout", "num", w)))


def model_desc_to_json(d):
    """nf_model_desc_to_json, byte for byte. `d` is a dict with the nf_model_desc fields
    (classes as a list of names, seed as an int, extra as a list of (key, value))."""
    nfiles = len(d["classes"]) if d["classes"] else 1
    if len(d["class_files"]) != nfiles:
        raise ValueError(f"class_files needs {nfiles} entries")
    loss = d["final_loss"]
    training = _json_obj([
        ("steps", str(int(d["steps"]))), ("examples_seen", str(int(d["examples_seen"]))),
        ("final_loss", _json_f64(loss) if loss is not None and math.isfinite(loss) else "null"),
        ("class_files", _json_arr(str(int(c)) for c in d["class_files"])),
        ("seed", _json_str(str(int(d["seed"])))),   # a u64 as a string (checkpoint.c)
    ])
    return _json_obj([
        ("representation", _json_str(d["representation"])), ("n_fft", str(int(d["n_fft"]))),
        ("hop", str(int(d["hop"]))), ("compress_power", _json_f32(d["compress_power"])),
        ("norm_scale", _json_f32(d["norm_scale"])), ("sample_rate", str(int(d["sample_rate"]))),
        ("channels", str(int(d["channels"]))), ("length", str(int(d["length"]))),
        ("objective", _json_str(d["objective"])), ("schedule", _json_str(d["schedule"])),
        ("T", str(int(d["T"]))), ("learned_variance", "true" if d["learned_variance"] else "false"),
        ("classes", _json_arr(_json_str(c) for c in d["classes"])),
        ("training", training),
        ("extra", _json_obj([(k, _json_str(v)) for k, v in d["extra"]])),
    ])


def model_desc_from_json(text):
    """nf_model_desc_from_json (the keys it requires, with their types)."""
    o = json.loads(text)
    w = "noisefloor.model"
    d = {}
    for k, kind in [("representation", "str"), ("n_fft", "int"), ("hop", "int"),
                    ("compress_power", "num"), ("norm_scale", "num"), ("sample_rate", "int"),
                    ("channels", "int"), ("length", "int"), ("objective", "str"),
                    ("schedule", "str"), ("T", "int"), ("learned_variance", "bool"),
                    ("classes", "list")]:
        d[k] = _need(o, k, kind, w)
    if d["representation"] not in ("wave", "stft") or d["objective"] not in ("eps", "v", "x0") \
            or d["schedule"] not in ("linear", "cosine"):
        raise ValueError(f"{w}: bad representation, objective or schedule in {text}")
    tr = _need(o, "training", "obj", w)
    for k, kind in [("steps", "int"), ("examples_seen", "int"), ("class_files", "list"),
                    ("seed", "str")]:
        d[k] = _need(tr, k, kind, w + ": training")
    if "final_loss" not in tr:
        raise ValueError(f"{w}: training: key 'final_loss' is missing")
    d["final_loss"] = tr["final_loss"]
    d["seed"] = int(d["seed"])
    d["extra"] = list(o.get("extra", {}).items())
    return d


# The description stored with the Python-written model (values chosen to exercise the
# JSON: a final loss that needs 16 digits, a seed above 2^53, three class names).
PY_DESC = {
    "representation": "wave", "n_fft": 0, "hop": 0, "compress_power": 1.0, "norm_scale": 1.0,
    "sample_rate": 16000, "channels": 2, "length": LENGTH, "objective": "v",
    "schedule": "cosine", "T": 1000, "learned_variance": False,
    "classes": ["kick", "snare", "hat"],
    "steps": 1234, "examples_seen": 9876, "final_loss": math.pi / 100,
    "class_files": [3, 4, 5], "seed": 12345678901234567890,
    "extra": [("writer", "tests/reference/unet_ref.py write-py-model")],
}


def model_metadata(cfg, desc):
    return {"format": "noisefloor", "format_version": str(CKPT_FORMAT_VERSION),
            "noisefloor.config": config_to_json(cfg),
            "noisefloor.model": model_desc_to_json(desc)}


def forward64(cfg, tensors, x, t, y):
    """The reference output in float64 from the file's float32 (or float16) weights."""
    ref = UNet1D(cfg).double()
    load_numpy_state(ref, tensors)
    ref.eval()
    with torch.no_grad():
        return ref(torch.from_numpy(np.asarray(x, dtype=np.float64)),
                   torch.from_numpy(np.asarray(t, dtype=np.float64)),
                   torch.from_numpy(np.asarray(y).astype(np.int64))).numpy()


def split_model(tensors):
    raw = {k: v for k, v in tensors.items() if not k.startswith("ema.")}
    ema = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
    return raw, ema


def write_py_model(outdir):
    """py_model.safetensors: the small network's weights and EMA weights in the full
    model-file format; py_model_data.safetensors: fixed inputs and the float64 outputs
    of both weight sets."""
    torch.manual_seed(4321)
    model = UNet1D(SMALL)
    g = torch.Generator().manual_seed(4322)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".norm" in name or name.startswith("out_norm"):
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=g))
    weights = state_to_numpy(model)
    # EMA weights that differ from the raw ones everywhere, so that loading the wrong set
    # (or a mix) shows in the output.
    ema = {k: (v + 0.05 * torch.randn(v.shape, generator=g).numpy()).astype(np.float32)
           for k, v in weights.items()}
    tensors = dict(weights)
    tensors.update({"ema." + k: v for k, v in ema.items()})
    os.makedirs(outdir, exist_ok=True)
    mpath = os.path.join(outdir, PY_MODEL)
    safetensors_np.save(mpath, tensors, model_metadata(SMALL, PY_DESC))

    # The reference outputs come from what was written, read back.
    loaded, meta = safetensors_np.load(mpath)
    cfg = config_from_json(meta["noisefloor.config"])
    assert cfg == SMALL and model_desc_from_json(meta["noisefloor.model"]) == PY_DESC
    raw, ema_l = split_model(loaded)
    x = torch.randn(3, SMALL.in_ch, LENGTH, generator=g).float().numpy()
    t = np.array([0.0, 37.0, 999.0], dtype=np.float32)
    y = np.array([2, -1, 0], dtype=np.int32)
    data = {"x": x, "t": t, "y": y,
            "out": forward64(cfg, raw, x, t, y).astype(np.float32),
            "out.ema": forward64(cfg, ema_l, x, t, y).astype(np.float32)}
    dpath = os.path.join(outdir, PY_MODEL_DATA)
    safetensors_np.save(dpath, data, {"model": PY_MODEL, "torch": torch.__version__,
                                      "out": "forward of the raw weights, float64",
                                      "out.ema": "forward of the ema.* weights, float64"})
    for p in (mpath, dpath):
        print(f"unet_ref: wrote {p} ({os.path.getsize(p)} bytes)")


def _rel_err(c, ref):
    c = np.asarray(c, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if c.shape != ref.shape:
        return math.inf
    if not np.all(np.isfinite(c)):
        return math.inf
    m = np.abs(ref).max()
    d = np.abs(c - ref).max()
    return d / m if m > 0 else d


def check_c_model(path, outputs, tol=1e-4):
    """Check a model file written by nf_checkpoint_save and the outputs the C network gave
    on it: returns a list of failures (empty if all is well)."""
    bad = []
    tensors, meta = safetensors_np.load(path)
    if meta.get("format") != "noisefloor":
        bad.append(f"metadata format is {meta.get('format')!r}")
    if meta.get("format_version") != str(CKPT_FORMAT_VERSION):
        bad.append(f"metadata format_version is {meta.get('format_version')!r}")
    extra_keys = set(meta) - {"format", "format_version", "noisefloor.config", "noisefloor.model"}
    if extra_keys:
        bad.append(f"unexpected metadata keys {sorted(extra_keys)}")
    cfg = config_from_json(meta["noisefloor.config"])
    desc = model_desc_from_json(meta["noisefloor.model"])
    # The JSON the C writer produced must be what this module writes for the same values,
    # byte for byte (the two serializers agree, not just the two parsers).
    if config_to_json(cfg) != meta["noisefloor.config"]:
        bad.append(f"config JSON differs:\n  C:  {meta['noisefloor.config']}\n  py: {config_to_json(cfg)}")
    if model_desc_to_json(desc) != meta["noisefloor.model"]:
        bad.append(f"model JSON differs:\n  C:  {meta['noisefloor.model']}\n  py: {model_desc_to_json(desc)}")
    if len(desc["classes"]) != cfg.num_classes:
        bad.append(f"{len(desc['classes'])} class names for {cfg.num_classes} classes")
    if desc["representation"] == "wave" and desc["channels"] != cfg.in_ch:
        bad.append(f"wave model with {desc['channels']} channels but in_ch {cfg.in_ch}")
    raw, ema = split_model(tensors)
    dtypes = sorted({str(v.dtype) for v in tensors.values()})
    print(f"unet_ref: {path}: config {config_to_json(cfg)}")
    print(f"unet_ref: {len(raw)} tensors + {len(ema)} ema, stored as {dtypes}, "
          f"{sum(v.size for v in raw.values())} parameters")
    outs, ometa = safetensors_np.load(outputs)
    x, t, y = outs["x"], outs["t"], outs["y"]
    print(f"unet_ref: inputs x {list(x.shape)}, t {t.tolist()}, y {y.tolist()}")
    sets = [("out", raw)] + ([("out.ema", ema)] if ema else [])
    if "out.ema" in outs and not ema:
        bad.append("the C outputs have out.ema but the file has no ema.* tensors")
    for key, w in sets:
        if key not in outs:
            bad.append(f"{outputs}: no tensor {key!r}")
            continue
        try:
            ref = forward64(cfg, w, x, t, y)
        except (ValueError, RuntimeError) as e:
            bad.append(f"{key}: the torch network does not take the weights: {e}")
            continue
        rel = _rel_err(outs[key], ref)
        ok = rel <= tol
        print(f"unet_ref:   {key:8s} max|ref| {np.abs(ref).max():.3e}  rel err {rel:.2e}  "
              f"(tolerance {tol:.0e}) {'ok' if ok else 'FAIL'}")
        if not ok:
            bad.append(f"{key}: C output differs from torch by {rel:.3g} (relative)")
    return bad


def check_c(pairs):
    bad = []
    for path, outputs in pairs:
        try:
            bad += [f"{path}: {b}" for b in check_c_model(path, outputs)]
        except (ValueError, KeyError, OSError) as e:
            bad.append(f"{path}: {type(e).__name__}: {e}")
    for b in bad:
        print(f"unet_ref: FAIL {b}", file=sys.stderr)
    print(f"unet_ref: check-c {'FAILED' if bad else 'passed'} ({len(pairs)} file(s))")
    return 1 if bad else 0


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    if argv and argv[0] == "check-c":
        if len(argv) < 3 or len(argv) % 2 == 0:
            print("usage: unet_ref.py check-c MODEL OUTPUTS [MODEL OUTPUTS ...]", file=sys.stderr)
            return 2
        torch.set_num_threads(2)
        return check_c(list(zip(argv[1::2], argv[2::2])))
    if argv and argv[0] == "write-py-model":
        ap = argparse.ArgumentParser(description="write " + PY_MODEL + " and " + PY_MODEL_DATA)
        ap.add_argument("--out", default=os.path.join(here, "fixtures"))
        args = ap.parse_args(argv[1:])
        torch.set_num_threads(2)
        write_py_model(args.out)
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(here, "fixtures"))
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    make_fixture(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
