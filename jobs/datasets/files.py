"""Reading an uploaded data set file (``.npz`` or ``.safetensors``) without numpy or torch.

The API validates uploads, and its install carries neither numpy nor torch, so the two
formats are read here from their specifications: an ``.npz`` is a zip of ``.npy`` members
(a magic string, a header that is a Python literal dict, then the raw array), a
``.safetensors`` file is an 8-byte little-endian header length, a JSON header and one
buffer. Arrays are streamed in chunks of :data:`CHUNK` bytes, so validating a file of any
size holds about one chunk in memory. Nothing is ever unpickled: an object array is refused
from its header, before a byte of its data is read.
"""

from __future__ import annotations

import ast
import json
import math
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["CHUNK", "ArrayInfo", "DatasetFileError", "read_arrays"]

CHUNK = 1 << 20
# numpy's type characters (the npy header's `descr` after its byte-order mark) -> our names
_NPY = {
    "f2": "float16", "f4": "float32", "f8": "float64",
    "i1": "int8", "i2": "int16", "i4": "int32", "i8": "int64",
    "u1": "uint8", "u2": "uint16", "u4": "uint32", "u8": "uint64", "b1": "bool",
}  # fmt: skip
_SAFETENSORS = {
    "F16": "float16", "F32": "float32", "F64": "float64",
    "I8": "int8", "I16": "int16", "I32": "int32", "I64": "int64",
    "U8": "uint8", "U16": "uint16", "U32": "uint32", "U64": "uint64", "BOOL": "bool",
}  # fmt: skip
# our dtype names -> (item size, struct format, little-endian)
FORMATS = {
    "float16": (2, "<e"), "float32": (4, "<f"), "float64": (8, "<d"),
    "int8": (1, "<b"), "int16": (2, "<h"), "int32": (4, "<i"), "int64": (8, "<q"),
    "uint8": (1, "<B"), "uint16": (2, "<H"), "uint32": (4, "<I"), "uint64": (8, "<Q"),
    "bool": (1, "<?"),
}  # fmt: skip
_MAX_HEADER = 100 << 20  # a safetensors header over 100 MB is not a data set's


class DatasetFileError(ValueError):
    """The file, or one array in it, cannot be accepted.

    Attributes:
        array: the offending array's name, or ``None`` for the file as a whole.
    """

    def __init__(self, message: str, array: str | None = None):
        super().__init__(message)
        self.array = array


@dataclass(frozen=True)
class ArrayInfo:
    """One array's name, dtype (``float32``, ``int64``, ...) and shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        """The array's data size in bytes."""
        return math.prod(self.shape) * FORMATS[self.dtype][0]


def read_arrays(path: str | Path) -> Iterator[tuple[ArrayInfo, Iterator[bytes]]]:
    """Each array of the file with an iterator over its raw little-endian C-order bytes.

    The chunks of one array must be consumed before the next array is asked for. Fortran
    order is accepted only for arrays of at most one dimension above 1 (then the bytes are
    the same).

    Raises:
        DatasetFileError: not an ``.npz`` or ``.safetensors`` file, truncated or corrupt
            data, an object (pickled), structured, complex or big-endian array.
    """
    path = Path(path)
    with path.open("rb") as f:
        head = f.read(8)
    if head.startswith(b"PK"):
        yield from _npz(path)
    elif len(head) == 8:
        yield from _safetensors(path)
    else:
        raise DatasetFileError("the file is neither an .npz nor a .safetensors file (too short)")


# -- .npz ----------------------------------------------------------------------------------


def _npz(path: Path) -> Iterator[tuple[ArrayInfo, Iterator[bytes]]]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetFileError(f"not a readable .npz file (truncated or corrupt): {exc}") from None
    with archive:
        for member in archive.infolist():
            name = member.filename.removesuffix(".npy")
            if not member.filename.endswith(".npy"):
                raise DatasetFileError(f"npz member {member.filename!r} is not an .npy array", name)
            try:
                with archive.open(member) as stream:
                    info = _npy_header(stream, name)
                    yield info, _chunks(stream, info)
            except (zipfile.BadZipFile, EOFError, OSError, struct.error) as exc:
                raise DatasetFileError(
                    f"array {name!r} is truncated or corrupt: {exc}", name
                ) from None


def _npy_header(stream: IO[bytes], name: str) -> ArrayInfo:
    magic = stream.read(8)
    if len(magic) < 8 or not magic.startswith(b"\x93NUMPY"):
        raise DatasetFileError(f"array {name!r} is not in .npy format", name)
    size_bytes = 2 if magic[6] == 1 else 4
    (length,) = struct.unpack("<H" if size_bytes == 2 else "<I", stream.read(size_bytes))
    raw = stream.read(length)
    try:
        header = ast.literal_eval(raw.decode("latin1"))  # a literal dict: nothing is run
        descr, fortran, shape = header["descr"], header["fortran_order"], header["shape"]
    except (ValueError, SyntaxError, KeyError, TypeError):
        raise DatasetFileError(f"array {name!r} has an unreadable .npy header", name) from None
    if not isinstance(descr, str):
        raise DatasetFileError(f"array {name!r} has a structured dtype; only plain numbers", name)
    kind = descr[1:]
    if kind.startswith("O"):
        raise DatasetFileError(
            f"array {name!r} is an object array (pickled Python objects); only numeric "
            "arrays are accepted (save with allow_pickle=False)",
            name,
        )
    dtype = _NPY.get(kind)
    if dtype is None:
        raise DatasetFileError(
            f"array {name!r} has dtype {descr!r}; only real numbers and booleans "
            f"({', '.join(sorted(set(_NPY.values())))})",
            name,
        )
    if descr[0] == ">" and FORMATS[dtype][0] > 1:
        raise DatasetFileError(
            f"array {name!r} is big-endian ({descr!r}); save it little-endian", name
        )
    shape = tuple(int(n) for n in shape)
    if fortran and sum(n > 1 for n in shape) > 1:
        raise DatasetFileError(
            f"array {name!r} is in Fortran order; save np.ascontiguousarray(a)", name
        )
    return ArrayInfo(name, dtype, shape)


def _chunks(stream: IO[bytes], info: ArrayInfo) -> Iterator[bytes]:
    itemsize = FORMATS[info.dtype][0]
    left = info.nbytes
    step = CHUNK - CHUNK % itemsize
    while left:
        block = stream.read(min(step, left))
        while block and len(block) % itemsize:  # a short read: complete the last item
            more = stream.read(itemsize - len(block) % itemsize)
            if not more:
                break
            block += more
        if not block or len(block) % itemsize:
            raise DatasetFileError(
                f"array {info.name!r} is truncated: {left} of its {info.nbytes} bytes are missing",
                info.name,
            )
        left -= len(block)
        yield block


# -- .safetensors --------------------------------------------------------------------------


def _safetensors(path: Path) -> Iterator[tuple[ArrayInfo, Iterator[bytes]]]:
    size = path.stat().st_size
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > _MAX_HEADER or length + 8 > size:
            raise DatasetFileError(
                "the file is neither an .npz nor a readable .safetensors file (header length "
                f"{length} for a file of {size} bytes)"
            )
        try:
            header = json.loads(f.read(length))
        except (ValueError, UnicodeDecodeError):
            raise DatasetFileError("not a readable .safetensors file (bad JSON header)") from None
        if not isinstance(header, dict):
            raise DatasetFileError("not a readable .safetensors file (header is not an object)")
        entries = sorted(
            ((k, v) for k, v in header.items() if k != "__metadata__"),
            key=lambda kv: _offsets(kv[0], kv[1])[0],
        )
        base = 8 + length
        for name, entry in entries:
            info, (begin, end) = _safetensors_entry(name, entry), _offsets(name, entry)
            if end - begin != info.nbytes:
                raise DatasetFileError(
                    f"array {name!r}: data_offsets span {end - begin} bytes, its shape "
                    f"{info.shape} of {info.dtype} needs {info.nbytes}",
                    name,
                )
            if base + end > size:
                raise DatasetFileError(
                    f"array {name!r} is truncated: the file ends {base + end - size} bytes "
                    "before its data does",
                    name,
                )
            f.seek(base + begin)
            yield info, _chunks(f, info)


def _offsets(name: str, entry: Any) -> tuple[int, int]:
    try:
        begin, end = (int(x) for x in entry["data_offsets"])
    except (TypeError, KeyError, ValueError):
        raise DatasetFileError(f"array {name!r} has no valid data_offsets", name) from None
    if not 0 <= begin <= end:
        raise DatasetFileError(f"array {name!r} has data_offsets {[begin, end]}", name)
    return begin, end


def _safetensors_entry(name: str, entry: Any) -> ArrayInfo:
    dtype = _SAFETENSORS.get(str(entry.get("dtype")))
    if dtype is None:
        raise DatasetFileError(
            f"array {name!r} has dtype {entry.get('dtype')!r}; accepted: {', '.join(_SAFETENSORS)}",
            name,
        )
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise DatasetFileError(f"array {name!r} has shape {shape!r}", name)
    return ArrayInfo(name, dtype, tuple(shape))
