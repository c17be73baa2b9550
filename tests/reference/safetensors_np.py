"""A standard-library + numpy implementation of the safetensors file format.

Written from the published format description (huggingface/safetensors README) and the
checks its Rust reference makes when it reads a file (safetensors/src/tensor.rs:
read_metadata / Metadata::validate), so that a file this module accepts is one the
`safetensors` package accepts and the other way round, and a file it writes is laid out
the way the package writes it.

Layout:
    8 bytes      N, unsigned 64-bit little-endian: the length of the header
    N bytes      UTF-8 JSON object:
                   {"__metadata__": {str: str, ...},                (optional)
                    name: {"dtype": "F32", "shape": [d0, d1, ...],
                           "data_offsets": [begin, end]}, ...}
                 possibly padded at the end with spaces (0x20) so 8 + N is a multiple of 8
    rest         the byte buffer; offsets are relative to its start; little-endian,
                 C order; the tensors cover it exactly (contiguous, no overlap, no holes)

API:
    load(path) -> (dict[str, np.ndarray], dict[str, str])
    save(path, tensors, metadata=None, dtypes=None)
    loads(data: bytes) / dumps(tensors, metadata=None, dtypes=None) -> bytes

BF16 has no numpy dtype: load() returns BF16 tensors converted to float32 (exactly; every
bfloat16 is a float32), and save() writes a float array as BF16 when dtypes[name] == "BF16"
(rounded to nearest even, as torch does).

Run as a script: `python3 safetensors_np.py FILE` prints a summary of the file or the
error (exit status 1).
"""

import json
import struct
import sys

import numpy as np

# The largest header the reference accepts (MAX_HEADER_SIZE in tensor.rs).
MAX_HEADER_SIZE = 100_000_000

# Element sizes, and the order the reference's Dtype enum declares them in: the writer
# sorts tensors by that order descending (largest alignment first), then by name, so
# every tensor starts on a multiple of its element size.
_DTYPE_ORDER = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16",
                "I32", "U32", "F32", "F64", "I64", "U64"]
_DTYPE_SIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2,
               "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8,
               "I64": 8, "U64": 8}
_TO_NUMPY = {"BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "I16": np.int16,
             "U16": np.uint16, "F16": np.float16, "I32": np.int32, "U32": np.uint32,
             "F32": np.float32, "F64": np.float64, "I64": np.int64, "U64": np.uint64}
_FROM_NUMPY = {np.dtype(v).str.lstrip("<>|="): k for k, v in _TO_NUMPY.items()}


class SafetensorsError(ValueError):
    """A file that is not a valid safetensors file (the message says why)."""


def _fail(msg):
    raise SafetensorsError(msg)


def _no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            _fail(f"duplicate key {k!r} in header")
        d[k] = v
    return d


def _reject_constant(name):
    _fail(f"invalid JSON constant {name} in header")


def _is_uint(x):
    # JSON integers only: bool is an int subclass in Python, and floats are not usize.
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def parse_header(data):
    """Validate the header of a whole file held in `data` (bytes).

    Returns (n, entries, metadata): n the header length, entries a list of
    (name, dtype, shape, begin, end) sorted by offset, metadata a dict (maybe empty)."""
    if len(data) < 8:
        _fail(f"file too small for a header length ({len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_SIZE:
        _fail(f"header length {n} is too large (limit {MAX_HEADER_SIZE})")
    if 8 + n > len(data):
        _fail(f"header length {n} goes past the end of the file ({len(data)} bytes)")
    try:
        text = data[8:8 + n].decode("utf-8")
    except UnicodeDecodeError as e:
        _fail(f"header is not valid UTF-8 ({e})")
    if not text.startswith("{"):
        _fail("header does not start with '{'")
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates,
                            parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        _fail(f"header is not valid JSON ({e})")
    if not isinstance(header, dict):
        _fail("header is not a JSON object")

    metadata = {}
    entries = []
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict):
                _fail("__metadata__ is not an object")
            for k, v in info.items():
                if not isinstance(v, str):
                    _fail(f"__metadata__ value for {k!r} is not a string")
            metadata = dict(info)
            continue
        if not isinstance(info, dict):
            _fail(f"tensor {name!r}: entry is not an object")
        extra = set(info) - {"dtype", "shape", "data_offsets"}
        missing = {"dtype", "shape", "data_offsets"} - set(info)
        if missing:
            _fail(f"tensor {name!r}: missing {sorted(missing)}")
        if extra:
            # serde ignores unknown fields in TensorInfo; so do we.
            pass
        dtype = info["dtype"]
        if not isinstance(dtype, str) or dtype not in _DTYPE_SIZE:
            _fail(f"tensor {name!r}: unknown dtype {dtype!r}")
        shape = info["shape"]
        if not isinstance(shape, list) or not all(_is_uint(d) for d in shape):
            _fail(f"tensor {name!r}: shape {shape!r} is not a list of non-negative integers")
        offs = info["data_offsets"]
        if (not isinstance(offs, list) or len(offs) != 2
                or not all(_is_uint(o) for o in offs)):
            _fail(f"tensor {name!r}: data_offsets {offs!r} is not [begin, end]")
        # usize in the reference: values past 2^64 - 1 do not deserialize.
        if any(d >= 2**64 for d in shape) or any(o >= 2**64 for o in offs):
            _fail(f"tensor {name!r}: number too large")
        entries.append((name, dtype, list(shape), offs[0], offs[1]))

    # Metadata::validate: sorted by offsets, each must begin where the last ended, and
    # its byte count must be shape product x element size (checked, no overflow).
    entries.sort(key=lambda e: (e[3], e[4]))
    start = 0
    for name, dtype, shape, b, e in entries:
        if b != start or e < b:
            _fail(f"tensor {name!r}: data_offsets [{b}, {e}] are not contiguous "
                  f"(expected to begin at {start})")
        start = e
        count = 1
        for d in shape:
            count *= d
        nbytes = count * _DTYPE_SIZE[dtype]
        if nbytes >= 2**64:
            _fail(f"tensor {name!r}: shape {shape} overflows")
        if e - b != nbytes:
            _fail(f"tensor {name!r}: data_offsets span {e - b} bytes but dtype {dtype} "
                  f"and shape {shape} need {nbytes}")
    if 8 + n + start != len(data):
        _fail(f"tensors cover {start} bytes but the buffer has {len(data) - 8 - n}")
    return n, entries, metadata


def _bf16_to_f32(raw):
    u = raw.astype(np.uint32) << 16
    return u.view(np.float32)


def _f32_to_bf16(x):
    """Round float32 to bfloat16 bits, to nearest even; NaN stays a (quiet) NaN."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounding = ((u >> 16) & 1) + 0x7FFF
    r = ((u + rounding) >> 16).astype(np.uint16)
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    r[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return r


def loads(data):
    """Parse a whole file held in bytes: (tensors, metadata)."""
    data = bytes(data)
    n, entries, metadata = parse_header(data)
    base = 8 + n
    tensors = {}
    for name, dtype, shape, b, e in entries:
        raw = data[base + b:base + e]
        if dtype == "BF16":
            arr = _bf16_to_f32(np.frombuffer(raw, dtype="<u2")).reshape(shape)
        elif dtype in _TO_NUMPY:
            arr = np.frombuffer(raw, dtype=np.dtype(_TO_NUMPY[dtype]).newbyteorder("<"))
            arr = arr.astype(arr.dtype.newbyteorder("="), copy=True).reshape(shape)
        else:
            # FP8 has no numpy type: raw bytes, shape kept.
            arr = np.frombuffer(raw, dtype=np.uint8).copy().reshape(shape)
        tensors[name] = arr
    return tensors, metadata


def load(path):
    with open(path, "rb") as f:
        data = f.read()
    try:
        return loads(data)
    except SafetensorsError as e:
        raise SafetensorsError(f"{path}: {e}") from None


def dumps(tensors, metadata=None, dtypes=None):
    """Serialize like the reference's prepare()/serialize(): compact JSON with
    __metadata__ first, tensors sorted by dtype alignment (descending) then name, the
    header padded with spaces to a multiple of 8 bytes."""
    dtypes = dtypes or {}
    items = []
    for name, arr in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"bad tensor name {name!r}")
        arr = np.asarray(arr)
        dt = dtypes.get(name)
        if dt == "BF16":
            raw = _f32_to_bf16(arr).astype("<u2").tobytes()
        else:
            key = arr.dtype.str.lstrip("<>|=")
            if key not in _FROM_NUMPY:
                raise ValueError(f"tensor {name!r}: numpy dtype {arr.dtype} not supported")
            if dt is None:
                dt = _FROM_NUMPY[key]
            elif dt not in _TO_NUMPY:
                raise ValueError(f"tensor {name!r}: dtype {dt!r} not supported for writing")
            arr = arr.astype(np.dtype(_TO_NUMPY[dt]).newbyteorder("<"))
            raw = np.ascontiguousarray(arr).tobytes()
        items.append((name, dt, list(arr.shape), raw))
    items.sort(key=lambda it: (-_DTYPE_ORDER.index(it[1]), it[0]))

    header = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ValueError("metadata must map str to str")
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name, dt, shape, raw in items:
        header[name] = {"dtype": dt, "shape": shape,
                        "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    # serde_json writes non-ASCII characters as UTF-8, not \u escapes.
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(it[3] for it in items)


def save(path, tensors, metadata=None, dtypes=None):
    data = dumps(tensors, metadata, dtypes)
    with open(path, "wb") as f:
        f.write(data)


def _main(argv):
    if len(argv) != 2:
        print("usage: safetensors_np.py FILE", file=sys.stderr)
        return 2
    try:
        tensors, metadata = load(argv[1])
    except (SafetensorsError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for k, v in sorted(metadata.items()):
        print(f"meta {k} = {v if len(v) < 200 else v[:200] + '...'}")
    for name, arr in tensors.items():
        print(f"{name} {arr.dtype} {list(arr.shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
