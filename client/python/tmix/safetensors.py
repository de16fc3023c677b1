"""Safetensors files in pure numpy (no torch needed).

The format (https://huggingface.co/docs/safetensors): an 8-byte little-endian header length,
a JSON header {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__":
{str: str}}, then the raw little-endian tensor data. tmix reads it in kernels/safetensors.c.

API:

    load(path) -> (tensors, metadata)
        tensors: dict name -> np.ndarray in file order; metadata: dict str -> str.
        BF16 tensors come back widened to float32 (exact); every other dtype as itself.
    header(path) -> (entries, metadata)
        entries: dict name -> (dtype, shape) as written in the file ("F32", [2, 3]).
    save(path, tensors, metadata=None)
        tensors: a dict (insertion order is kept) or a list of (name, value) pairs. A value
        is a numpy array (float64, float32, float16, int64, int32, uint8), a torch tensor
        (the same dtypes plus torch.bfloat16), or a pair ("BF16", uint16 array of the raw
        bfloat16 bits). metadata values must be strings. The file is written to PATH.tmp
        and renamed over PATH, so readers never see half a file.
    bf16(array) -> ("BF16", uint16 array)
        rounds float32 values to bfloat16 (nearest even), ready for save.

Errors are SafetensorsError (a ValueError) naming the file and the tensor.
"""
import json
import os
import struct

import numpy as np

__all__ = ["SafetensorsError", "load", "header", "save", "bf16"]

MAX_HEADER = 100 << 20  # larger headers are refused, as upstream and tmix do

# dtype name -> numpy dtype of the stored bytes (BF16 is kept as its uint16 bits).
_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "U8": np.dtype("u1"),
}
_NAMES = {np.dtype(v).newbyteorder("<"): k for k, v in _DTYPES.items() if k != "BF16"}


class SafetensorsError(ValueError):
    pass


def _read_header(path, raw_len, read):
    if raw_len < 8:
        raise SafetensorsError(f"{path}: {raw_len} bytes, too short for a safetensors header")
    (n,) = struct.unpack("<Q", read(0, 8))
    if n > MAX_HEADER or n > raw_len - 8:
        raise SafetensorsError(f"{path}: header length {n} does not fit the file "
                               f"({raw_len} bytes)")
    try:
        head = json.loads(read(8, n).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"{path}: header is not JSON: {e}") from None
    if not isinstance(head, dict):
        raise SafetensorsError(f"{path}: header is not a JSON object")
    metadata = head.pop("__metadata__", {}) or {}
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise SafetensorsError(f"{path}: __metadata__ must map strings to strings")
    data_len, entries, spans = raw_len - 8 - n, {}, []
    for name, e in head.items():
        where = f"{path}: tensor '{name}'"
        if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
            raise SafetensorsError(f"{where}: entry needs exactly dtype, shape, data_offsets")
        dtype, shape, offs = e["dtype"], e["shape"], e["data_offsets"]
        if dtype not in _DTYPES:
            raise SafetensorsError(f"{where}: unsupported dtype {dtype!r}")
        if not isinstance(shape, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise SafetensorsError(f"{where}: bad shape {shape!r}")
        if (not isinstance(offs, list) or len(offs) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)
                or not 0 <= offs[0] <= offs[1] <= data_len):
            raise SafetensorsError(f"{where}: data_offsets {offs!r} outside the data "
                                   f"({data_len} bytes)")
        want = int(np.prod(shape, dtype=np.int64)) * _DTYPES[dtype].itemsize
        if offs[1] - offs[0] != want:
            raise SafetensorsError(f"{where}: {offs[1] - offs[0]} bytes for {dtype} "
                                   f"{shape} (needs {want})")
        entries[name] = (dtype, shape, offs)
        spans.append((offs[0], offs[1], name))
    # Tensors may not overlap; upstream also asks that they tile the data exactly.
    spans.sort()
    end = 0
    for b, e, name in spans:
        if b != end:
            raise SafetensorsError(f"{path}: tensor '{name}' starts at {b}, expected {end} "
                                   "(overlap or gap in the data)")
        end = e
    if end != data_len:
        raise SafetensorsError(f"{path}: {data_len - end} bytes after the last tensor")
    return entries, metadata, 8 + n


def header(path):
    """Returns ({name: (dtype, shape)}, metadata) without reading the tensor data."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        def read(at, count):
            f.seek(at)
            return f.read(count)
        entries, metadata, _ = _read_header(path, size, read)
    return {k: (d, s) for k, (d, s, _) in entries.items()}, metadata


def load(path):
    """Returns ({name: np.ndarray}, metadata); BF16 is widened to float32."""
    with open(path, "rb") as f:
        raw = f.read()
    entries, metadata, base = _read_header(path, len(raw), lambda at, n: raw[at:at + n])
    tensors = {}
    for name, (dtype, shape, (b, e)) in entries.items():
        a = np.frombuffer(raw, dtype=_DTYPES[dtype], count=(e - b) // _DTYPES[dtype].itemsize,
                          offset=base + b).reshape(shape)
        if dtype == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = a.copy()  # writable, and frees the file buffer
    return tensors, metadata


def bf16(array):
    """Rounds to bfloat16 (nearest even; NaN stays NaN): ("BF16", uint16 bits)."""
    bits = np.ascontiguousarray(array, dtype="<f4").view(np.uint32)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    nan = np.isnan(np.asarray(array, dtype=np.float32))
    rounded = np.where(nan, (bits >> 16) | 0x40, rounded)
    return "BF16", rounded.astype(np.uint16)


def _as_bytes(name, value):
    """(dtype name, shape, bytes) of one tensor value."""
    if isinstance(value, tuple):
        if len(value) != 2 or value[0] != "BF16":
            raise SafetensorsError(f"tensor '{name}': a tuple value must be ('BF16', uint16 array)")
        a = np.asarray(value[1])
        if a.dtype != np.uint16:
            raise SafetensorsError(f"tensor '{name}': BF16 bits must be uint16, got {a.dtype}")
        return "BF16", list(a.shape), np.ascontiguousarray(a, dtype="<u2").tobytes()
    if type(value).__module__.startswith("torch"):  # a tensor; torch is imported by its owner
        import torch
        t = value.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            return _as_bytes(name, ("BF16", t.view(torch.int16).numpy().view(np.uint16)))
        value = t.numpy()
    if not isinstance(value, np.ndarray):
        raise SafetensorsError(f"tensor '{name}': expected a numpy array or torch tensor, "
                               f"got {type(value).__name__}")
    dt = value.dtype.newbyteorder("<") if value.dtype.byteorder == ">" else value.dtype
    dtype = _NAMES.get(dt)
    if dtype is None:
        raise SafetensorsError(f"tensor '{name}': unsupported dtype {value.dtype}")
    return dtype, list(value.shape), np.ascontiguousarray(value, dtype=_DTYPES[dtype]).tobytes()


def save(path, tensors, metadata=None):
    """Writes tensors (dict or (name, value) pairs, in that order) and metadata to path."""
    items = list(tensors.items()) if isinstance(tensors, dict) else list(tensors)
    metadata = dict(metadata or {})
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise SafetensorsError(f"{path}: metadata {k!r} must be a string key with a "
                                   f"string value, got {type(v).__name__}")
    head, blobs, offset = {}, [], 0
    if metadata:
        head["__metadata__"] = metadata
    for name, value in items:
        if not isinstance(name, str) or name == "__metadata__" or name in head:
            raise SafetensorsError(f"{path}: bad or repeated tensor name {name!r}")
        dtype, shape, data = _as_bytes(name, value)
        head[name] = {"dtype": dtype, "shape": shape,
                      "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(head, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # keeps the data 8-byte aligned for mapped readers
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
