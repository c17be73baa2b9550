"""Cross-language checks between safetensors_np.py and the C reader/writer.

    check_safetensors.py write-fixtures DIR
        Write the small committed fixtures (deterministic). Each holds, in its metadata
        key "expected", a JSON object {tensor name: [values as exact decimals]} that the
        C test compares against what it decodes.
    check_safetensors.py check-c FILE
        Validate a file the C test wrote (tests/checkpoint/test_safetensors.c: see
        c_written_expected() below for its contents) and check that re-serializing what
        was read gives the same bytes, i.e. the C writer lays files out exactly as the
        reference serializer does (compact JSON, __metadata__ first, tensors sorted by
        dtype alignment then name, header padded with spaces to 8 bytes).

Exit status 0 on success; a failed check prints why and exits 1.
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np as st  # noqa: E402


def exact_list(arr):
    # float(x) of a float16/float32/bfloat16-as-float32 value is exact in float64, and
    # repr() of a float64 reads back exactly with strtod.
    return [float(x) if arr.dtype.kind == "f" else int(x) for x in np.asarray(arr).ravel()]


def write_fixtures(outdir):
    os.makedirs(outdir, exist_ok=True)
    rng = np.random.default_rng(20240611)
    tensors = {
        "w.f32": (rng.standard_normal((3, 4, 5)) * 2).astype(np.float32),
        "w.f16": (rng.standard_normal((2, 7)) * 3).astype(np.float16),
        "w.f64": rng.standard_normal((4,)),
        "w.bf16": (rng.standard_normal((3, 3)) * 5).astype(np.float32),
        "n.i64": np.array([0, -1, 2**62 + 7, -(2**63), 2**63 - 1, 42], dtype=np.int64),
        "n.i32": np.array([[1, -2], [2**31 - 1, -(2**31)]], dtype=np.int32),
        "n.u8": np.arange(250, 256, dtype=np.uint8),
        "scalar": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "half.special": np.array([0.0, -0.0, 65504.0, -65504.0, 6.1035156e-05, 5.9604645e-08,
                                  np.inf, -np.inf, 1.0009765625, 0.333251953125], dtype=np.float16),
    }
    dtypes = {"w.bf16": "BF16"}
    expected = {}
    for name, arr in tensors.items():
        if name == "w.bf16":
            arr = st._bf16_to_f32(st._f32_to_bf16(arr)).reshape(arr.shape)
        vals = exact_list(arr)
        # JSON has no infinities: encode them as strings the C test understands.
        expected[name] = {"shape": list(arr.shape),
                          "values": [v if not (isinstance(v, float) and np.isinf(v))
                                     else ("inf" if v > 0 else "-inf") for v in vals]}
    meta = {
        "expected": json.dumps(expected, separators=(",", ":")),
        "unicode": "caf\u00e9 \u266b \U0001d11e",
        "escapes": "quote\" backslash\\ newline\n tab\t",
    }
    path = os.path.join(outdir, "py_basic.safetensors")
    st.save(path, tensors, meta, dtypes)
    # A file with no tensors and no metadata (the reference's smallest file).
    st.save(os.path.join(outdir, "py_empty.safetensors"), {})
    # Check our own output once more by reading it back.
    t2, m2 = st.load(path)
    assert m2 == meta
    for name, arr in tensors.items():
        got = t2[name]
        want = arr if name != "w.bf16" else st._bf16_to_f32(st._f32_to_bf16(arr)).reshape(arr.shape)
        assert got.shape == want.shape and np.array_equal(got, want), name
    print(f"wrote fixtures to {outdir}")


def c_written_expected():
    """What tests/checkpoint/test_safetensors.c writes with write_for_python()."""
    i = np.arange(24, dtype=np.float64)
    return {
        "alpha": ("F32", (2, 3, 4), (i * 0.25 - 3.0).astype(np.float32).reshape(2, 3, 4)),
        "beta": ("F16", (5,), np.array([0.5, -1.25, 1000.0, 1.0 / 3.0, 1e-6], dtype=np.float32)),
        "gamma": ("BF16", (2, 2), np.array([[1.0, -2.5], [3.14159, 1e10]], dtype=np.float32)),
        "delta": ("I64", (3,), np.array([-(2**63), 123456789012345, 2**63 - 1], dtype=np.int64)),
        "a.zero": ("F32", (0,), np.zeros((0,), dtype=np.float32)),
        "u\u00e9\"q": ("F32", (), np.array(7.0, dtype=np.float32)),
    }


def check_c(path):
    errors = []
    with open(path, "rb") as f:
        raw = f.read()
    tensors, meta = st.loads(raw)
    if meta.get("writer") != "noisefloor test" or meta.get("text") != "line1\nline2 \"q\" \\ \u00e9":
        errors.append(f"metadata mismatch: {meta!r}")
    exp = c_written_expected()
    if set(tensors) != set(exp):
        errors.append(f"tensor names {sorted(tensors)} != {sorted(exp)}")
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    dtypes_out = {}
    for name, (dt, shape, want) in exp.items():
        if name not in tensors:
            continue
        got = tensors[name]
        if header[name]["dtype"] != dt:
            errors.append(f"{name}: dtype {header[name]['dtype']} != {dt}")
        if tuple(got.shape) != shape:
            errors.append(f"{name}: shape {got.shape} != {shape}")
            continue
        if dt == "F16":
            want = want.astype(np.float16)  # numpy rounds to nearest even, as the C writer must
        elif dt == "BF16":
            want = st._bf16_to_f32(st._f32_to_bf16(want)).reshape(shape)
            dtypes_out[name] = "BF16"
        if not np.array_equal(got, want):
            errors.append(f"{name}: values {got.ravel()[:8]} != {want.ravel()[:8]}")
    # Byte-exact layout: re-serializing what we read must give the file back.
    again = st.dumps(tensors, meta, dtypes_out)
    if again != raw:
        errors.append("re-serialized bytes differ from the C-written file (layout differs "
                      f"from the reference serializer):\n  C : {raw[8:8 + n]!r}\n  py: "
                      f"{again[8:8 + int.from_bytes(again[:8], 'little')]!r}")
    if (8 + n) % 8:
        errors.append(f"header end {8 + n} not 8-byte aligned")
    for e in errors:
        print("FAIL", e)
    if not errors:
        print(f"ok: {path} read by safetensors_np, {len(tensors)} tensors, layout byte-identical")
    return 1 if errors else 0


def main(argv):
    if len(argv) == 3 and argv[1] == "write-fixtures":
        write_fixtures(argv[2])
        return 0
    if len(argv) == 3 and argv[1] == "check-c":
        try:
            return check_c(argv[2])
        except st.SafetensorsError as e:
            print(f"FAIL {argv[2]}: {e}")
            return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
