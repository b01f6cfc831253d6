"""Parse numeric output files from bytes: ``.npy`` (numpy) and ``.safetensors`` (by hand).

A safetensors file is an 8-byte little-endian header length, a JSON header mapping tensor
names to ``{dtype, shape, data_offsets}`` (offsets relative to the byte buffer after the
header) plus an optional ``__metadata__`` string map, then the buffer. Every length and
offset is checked against the bytes actually present before anything is read.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from proofs.errors import ArtifactFormatError
from protocol.encoding import decode_json
from protocol.errors import MessageError

MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_TENSORS = 100_000

_SAFETENSORS_DTYPES: dict[str, str] = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U64": "<u8",
    "U32": "<u4",
    "U16": "<u2",
    "U8": "u1",
    "BOOL": "?",
    # No numpy dtype: compared bit for bit as raw bytes.
    "F8_E4M3": "u1",
    "F8_E5M2": "u1",
}
_ITEMSIZE = {"BF16": 2} | {k: np.dtype(v).itemsize for k, v in _SAFETENSORS_DTYPES.items()}
RAW_DTYPES = frozenset({"F8_E4M3", "F8_E5M2"})
"""Declared dtypes held as raw bytes: compared exactly, never within a tolerance."""


@dataclass(frozen=True)
class Tensor:
    """One parsed array with the dtype its file declared (``BF16`` arrives as float32)."""

    declared_dtype: str
    array: np.ndarray

    @property
    def numeric(self) -> bool:
        return self.declared_dtype not in RAW_DTYPES and self.array.dtype.kind in "fciub"


@dataclass(frozen=True)
class TensorFile:
    """Named tensors of one file (``.npy`` holds a single tensor named ``""``)."""

    tensors: dict[str, Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)


def is_tensor_path(path: str) -> bool:
    return path.endswith((".npy", ".safetensors"))


def parse_tensor_file(path: str, data: bytes) -> TensorFile:
    if path.endswith(".npy"):
        return TensorFile({"": parse_npy(path, data)})
    if path.endswith(".safetensors"):
        return parse_safetensors(path, data)
    raise ArtifactFormatError(path, "not a .npy or .safetensors file")


def parse_npy(path: str, data: bytes) -> Tensor:
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError, EOFError, OSError ...
        raise ArtifactFormatError(path, f"not a readable .npy array: {exc}") from exc
    if not isinstance(arr, np.ndarray):
        raise ArtifactFormatError(path, "not a single .npy array")
    return Tensor(arr.dtype.str, arr)


def parse_safetensors(path: str, data: bytes) -> TensorFile:
    if len(data) < 8:
        raise ArtifactFormatError(path, "shorter than the 8-byte header length")
    n = int.from_bytes(data[:8], "little")
    if n > MAX_HEADER_BYTES or 8 + n > len(data):
        raise ArtifactFormatError(path, f"header length {n} exceeds the file or the limit")
    try:
        # The bounded decoder: an untrusted header never reaches an unbounded parser.
        header = decode_json(data[8 : 8 + n], max_bytes=MAX_HEADER_BYTES)
    except MessageError as exc:
        raise ArtifactFormatError(path, f"header is not a JSON object: {exc}") from exc
    if len(header) > MAX_TENSORS:
        raise ArtifactFormatError(path, "header must be a JSON object of bounded size")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict):
        raise ArtifactFormatError(path, "__metadata__ must be an object")
    buf = memoryview(data)[8 + n :]
    tensors = {name: _tensor(path, name, info, buf) for name, info in header.items()}
    return TensorFile(tensors, metadata)


def _tensor(path: str, name: str, info: Any, buf: memoryview) -> Tensor:
    where = f"tensor {name!r}"
    if not isinstance(info, dict):
        raise ArtifactFormatError(path, f"{where}: entry must be an object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in _ITEMSIZE:
        raise ArtifactFormatError(path, f"{where}: unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise ArtifactFormatError(path, f"{where}: shape must be a list of sizes")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
    ):
        raise ArtifactFormatError(path, f"{where}: data_offsets must be [begin, end]")
    begin, end = offsets
    if not 0 <= begin <= end <= len(buf):
        raise ArtifactFormatError(path, f"{where}: data_offsets outside the buffer")
    count = math.prod(shape)
    if (end - begin) != count * _ITEMSIZE[dtype]:
        raise ArtifactFormatError(path, f"{where}: {end - begin} bytes for shape {shape}")
    raw = buf[begin:end]
    if dtype == "BF16":
        # bfloat16 is the top half of a float32: widen the bits, then reinterpret.
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        arr = bits.view(np.float32).reshape(shape)
    else:
        arr = np.frombuffer(raw, dtype=_SAFETENSORS_DTYPES[dtype]).reshape(shape)
    return Tensor(dtype, arr)


def encode_safetensors(
    tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None
) -> bytes:
    """Serialize arrays in the safetensors layout (used by tests and benchmarks)."""
    names = {np.dtype(v).str: k for k, v in _SAFETENSORS_DTYPES.items() if k not in RAW_DTYPES}
    header: dict[str, Any] = {}
    chunks: list[bytes] = []
    offset = 0
    for name, arr in tensors.items():
        a = np.ascontiguousarray(arr)
        a = a.astype(a.dtype.newbyteorder("<")) if a.dtype.byteorder == ">" else a
        raw = a.tobytes()
        header[name] = {
            "dtype": names[a.dtype.str],
            "shape": list(a.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    return len(head).to_bytes(8, "little") + head + b"".join(chunks)
