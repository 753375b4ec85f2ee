"""Protocol-buffer wire format (proto2) and the ``caffe.proto`` messages that hold weights.

Pure Python + numpy, no protobuf package: varints, length-delimited and fixed32/64 fields, and
packed or unpacked repeated ``float``/``double`` arrays read with ``np.frombuffer`` (no per-value
loop). Offsets are absolute offsets into the buffer holding the whole file, so errors say where.

Field numbers, from BVLC Caffe's ``src/caffe/proto/caffe.proto``:

* ``NetParameter``: ``name = 1``, ``layers = 2`` (``V1LayerParameter``), ``layer = 100``.
* ``LayerParameter``: ``name = 1``, ``type = 2`` (string), ``bottom = 3``, ``top = 4``, ``blobs = 7``.
* ``V1LayerParameter``: ``layer = 1`` (``V0LayerParameter``), ``bottom = 2``, ``top = 3``,
  ``name = 4``, ``type = 5`` (enum ``LayerType``), ``blobs = 6``.
* ``V0LayerParameter``: ``name = 1``, ``type = 2`` (string), ``blobs = 50``.
* ``BlobProto``: legacy ``num, channels, height, width = 1..4``, ``data = 5`` (packed float),
  ``shape = 7`` (``BlobShape { repeated int64 dim = 1 [packed] }``), ``double_data = 8``.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Iterable, List, Mapping, Sequence, Tuple, Union

import numpy as np

__all__ = ["VARINT", "FIXED64", "LEN", "FIXED32", "WireError", "Reader", "encode_varint",
           "varint_field", "len_field", "string_field", "packed_varints_field", "packed_floats_field",
           "V1_TYPES", "V0_TYPES", "parse", "decode_blob", "decode_net", "encode_layer", "format_hint"]

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5
_WIDTH = {FIXED64: 8, FIXED32: 4}
_WIRE_NAMES = {VARINT: "varint", FIXED64: "fixed64", LEN: "length-delimited", FIXED32: "fixed32"}


class WireError(ValueError):
    """Malformed wire data: ``offset`` is the byte offset, ``problem`` says what was wrong."""

    def __init__(self, offset: int, problem: str) -> None:
        super().__init__(f"{problem} (byte {offset})")
        self.offset = offset
        self.problem = problem


class Reader:
    """Sequential reader over the message ``buf[start:end]`` (``end`` defaults to ``len(buf)``)."""

    def __init__(self, buf: Union[bytes, memoryview], start: int = 0, end: int | None = None) -> None:
        self.buf, self.pos = buf, start
        self.end = len(buf) if end is None else end

    def at_end(self) -> bool:
        """True once every byte of the message is consumed."""
        return self.pos >= self.end

    def varint(self) -> int:
        """Read one varint (at most 10 bytes) as an unsigned integer."""
        start, value, shift = self.pos, 0, 0
        while True:
            if self.pos >= self.end:
                raise WireError(start, "truncated varint (the data ends)")
            byte = self.buf[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift >= 70:
                raise WireError(start, "varint longer than 10 bytes")

    def int64(self) -> int:
        """Read a varint as a two's-complement signed 64-bit integer (proto ``int64``)."""
        value = self.varint() & (2**64 - 1)
        return value - (value >> 63 << 64)

    def tag(self) -> Tuple[int, int, int]:
        """Read a field tag; return ``(field_number, wire_type, tag_offset)``."""
        offset = self.pos
        key = self.varint()
        number, wire = key >> 3, key & 7
        if number == 0 or wire not in _WIRE_NAMES:
            raise WireError(offset, f"expected a field tag, found field {number} with wire type {wire}")
        return number, wire, offset

    def span(self) -> Tuple[int, int]:
        """Read a length-delimited payload; return its ``(start, stop)`` byte span."""
        offset, length = self.pos, self.varint()
        if length > self.end - self.pos:
            raise WireError(offset, f"expected a {length}-byte field, but only {self.end - self.pos} "
                                    "bytes are left")
        self.pos += length
        return self.pos - length, self.pos

    def sub(self) -> "Reader":
        """Read a length-delimited payload; return a :class:`Reader` over it (a sub-message)."""
        return Reader(self.buf, *self.span())

    def string(self) -> str:
        """Read a length-delimited UTF-8 string."""
        start, stop = self.span()
        try:
            return bytes(self.buf[start:stop]).decode("utf-8")
        except UnicodeDecodeError:
            raise WireError(start, "expected a UTF-8 string") from None

    def skip(self, wire: int) -> None:
        """Skip one value of the given wire type (an unknown or unused field)."""
        if wire == VARINT:
            self.varint()
        elif wire == LEN:
            self.span()
        else:
            self._advance(_WIDTH[wire])

    def _advance(self, count: int) -> int:
        if count > self.end - self.pos:
            raise WireError(self.pos, f"expected {count} more bytes, but only {self.end - self.pos} are left")
        self.pos += count
        return self.pos - count

    def expect(self, wire: int, wanted: Iterable[int], what: str, offset: int) -> None:
        """Raise :class:`WireError` unless ``wire`` is one of ``wanted`` (for field ``what``)."""
        if wire not in wanted:
            names = " or ".join(_WIRE_NAMES[w] for w in wanted)
            raise WireError(offset, f"expected {what} as {names}, found {_WIRE_NAMES[wire]}")

    def packed_varints(self) -> List[int]:
        """Read a packed repeated ``int64`` field (its tag already read)."""
        inner, values = self.sub(), []
        while not inner.at_end():
            values.append(inner.int64())
        return values

    def reals(self, number: int, wire: int, dtype: str) -> np.ndarray:
        """Read repeated ``float`` (``dtype='<f4'``) or ``double`` (``'<f8'``) values, tag already read.

        Packed (wire type LEN): one ``np.frombuffer`` call. Unpacked: the run of same-tag values.

        Returns:
            A new 1-D array of the native dtype.
        """
        width = np.dtype(dtype).itemsize
        if wire == LEN:
            start, stop = self.span()
            if (stop - start) % width:
                raise WireError(start, f"expected {width}-byte values, found {stop - start} bytes")
            return np.frombuffer(self.buf, dtype, (stop - start) // width, start).astype(dtype[1:])
        values = [np.frombuffer(self.buf, dtype, 1, self._advance(width))]
        key = (number << 3) | wire
        if key < 0x80:  # one-byte tag: scan the rows "tag, value" that follow with numpy
            rows = (self.end - self.pos) // (width + 1)
            block = np.frombuffer(self.buf, np.uint8, rows * (width + 1), self.pos).reshape(rows, width + 1)
            bad = np.flatnonzero(block[:, 0] != key)
            run = int(bad[0]) if bad.size else rows
            values.append(np.ascontiguousarray(block[:run, 1:]).view(dtype).ravel())
            self.pos += run * (width + 1)
        return np.concatenate(values).astype(dtype[1:])


def encode_varint(value: int) -> bytes:
    """Encode an integer as a varint (negative ``int64`` values take 10 bytes)."""
    value &= 2**64 - 1
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint_field(number: int, value: int) -> bytes:
    """Encode one varint field (``int64``, ``uint32``, ``bool``, enum)."""
    return encode_varint(number << 3 | VARINT) + encode_varint(value)


def len_field(number: int, payload: bytes) -> bytes:
    """Encode one length-delimited field (sub-message, string or packed array)."""
    return encode_varint(number << 3 | LEN) + encode_varint(len(payload)) + payload


def string_field(number: int, text: str) -> bytes:
    """Encode one UTF-8 string field."""
    return len_field(number, text.encode("utf-8"))


def packed_varints_field(number: int, values: Iterable[int]) -> bytes:
    """Encode a packed repeated ``int64`` field."""
    return len_field(number, b"".join(encode_varint(int(v)) for v in values))


def packed_floats_field(number: int, values: np.ndarray, dtype: str = "<f4") -> bytes:
    """Encode a packed repeated ``float`` (``'<f4'``) or ``double`` (``'<f8'``) field."""
    return len_field(number, np.ascontiguousarray(values, dtype=dtype).tobytes())


# ------------------------------------------------------------------------------ caffe.proto messages
# V1LayerParameter.LayerType enum -> LayerParameter type string (as Caffe's upgrade_proto.cpp).
V1_TYPES = {
    0: "", 1: "Accuracy", 2: "BNLL", 3: "Concat", 4: "Convolution", 5: "Data", 6: "Dropout",
    7: "EuclideanLoss", 8: "Flatten", 9: "HDF5Data", 10: "HDF5Output", 11: "Im2col", 12: "ImageData",
    13: "InfogainLoss", 14: "InnerProduct", 15: "LRN", 16: "MultinomialLogisticLoss", 17: "Pooling",
    18: "ReLU", 19: "Sigmoid", 20: "Softmax", 21: "SoftmaxWithLoss", 22: "Split", 23: "TanH",
    24: "WindowData", 25: "Eltwise", 26: "Power", 27: "SigmoidCrossEntropyLoss", 28: "HingeLoss",
    29: "MemoryData", 30: "ArgMax", 31: "Threshold", 32: "DummyData", 33: "Slice", 34: "MVN",
    35: "AbsVal", 36: "Silence", 37: "ContrastiveLoss", 38: "Exp", 39: "Deconvolution",
}
V0_TYPES = {"conv": "Convolution", "innerproduct": "InnerProduct", "pool": "Pooling", "relu": "ReLU",
            "lrn": "LRN", "dropout": "Dropout", "softmax": "Softmax", "data": "Data"}
Schema = Mapping[int, Tuple[str, Union[str, Callable[[Reader], Any]], bool]]


def parse(r: Reader, schema: Schema) -> Dict[str, Any]:
    """Decode the fields in ``schema`` ({number: (key, "str" | "int" | decoder, repeated)}), skip others."""
    out: Dict[str, Any] = {}
    while not r.at_end():
        number, wire, offset = r.tag()
        if number not in schema:
            r.skip(wire)
            continue
        key, kind, many = schema[number]
        if kind == "int" and wire == LEN and many:  # packed repeated int64
            out.setdefault(key, []).extend(r.packed_varints())
            continue
        r.expect(wire, (VARINT,) if kind == "int" else (LEN,), key, offset)
        value = r.int64() if kind == "int" else r.string() if kind == "str" else kind(r.sub())
        if many:
            out.setdefault(key, []).append(value)
        else:
            out[key] = value
    return out


def decode_blob(r: Reader) -> np.ndarray:
    """Decode a ``BlobProto`` into a float32 array of its shape (``shape``, else legacy 4-D)."""
    start, shape, legacy, data, double = r.pos, None, {}, [], []
    while not r.at_end():
        number, wire, offset = r.tag()
        if number == 7:  # BlobShape shape = 7
            r.expect(wire, (LEN,), "BlobProto.shape", offset)
            shape = parse(r.sub(), {1: ("dim", "int", True)}).get("dim", [])
        elif number in (5, 8):  # float data = 5, double double_data = 8
            r.expect(wire, (LEN, FIXED32 if number == 5 else FIXED64), "BlobProto data", offset)
            (data if number == 5 else double).append(r.reals(number, wire, "<f4" if number == 5 else "<f8"))
        elif number in (1, 2, 3, 4):  # legacy num, channels, height, width
            r.expect(wire, (VARINT,), "BlobProto legacy dimension", offset)
            legacy[number] = r.int64()
        else:
            r.skip(wire)
    chunks = double or data  # Caffe's Blob::FromProto prefers double_data when present
    values = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if shape is None:
        shape = [legacy.get(k, 0) for k in (1, 2, 3, 4)] if legacy else [values.size]
    if any(d < 0 for d in shape) or math.prod(shape) != values.size:
        raise WireError(start, f"expected a blob of shape {tuple(shape)}, found {values.size} values")
    return values.reshape(shape)


def _layer(r: Reader) -> Dict[str, Any]:
    return parse(r, {1: ("name", "str", False), 2: ("type", "str", False), 3: ("bottoms", "str", True),
                     4: ("tops", "str", True), 7: ("blobs", decode_blob, True)})


def _v1_layer(r: Reader) -> Dict[str, Any]:
    v0_schema: Schema = {1: ("name", "str", False), 2: ("type", "str", False),
                         50: ("blobs", decode_blob, True)}
    d = parse(r, {1: ("v0", lambda s: parse(s, v0_schema), False), 2: ("bottoms", "str", True),
                  3: ("tops", "str", True), 4: ("name", "str", False), 5: ("type", "int", False),
                  6: ("blobs", decode_blob, True)})
    v0 = d.pop("v0", {})
    kind = V1_TYPES.get(d["type"], f"V1Type{d['type']}") if "type" in d else V0_TYPES.get(
        v0.get("type", ""), v0.get("type", ""))
    return {**v0, **d, "type": kind}


def decode_net(buf: Union[bytes, memoryview]) -> Tuple[str, List[Dict[str, Any]]]:
    """Decode a ``NetParameter``: its name and its layers (dicts: name, type, bottoms, tops, blobs)."""
    d = parse(Reader(buf), {1: ("name", "str", False), 2: ("layers", _v1_layer, True),
                            100: ("layers", _layer, True)})
    return d.get("name", ""), d.get("layers", [])


def encode_layer(name: str, type: str, blobs: Sequence[np.ndarray], bottoms: Sequence[str] = (),
                 tops: Sequence[str] = ()) -> bytes:
    """Encode a ``LayerParameter`` payload, each blob as ``BlobProto{shape = 7, data = 5}``."""
    parts = [string_field(1, name), string_field(2, type)]
    parts += [string_field(3, b) for b in bottoms] + [string_field(4, t) for t in tops]
    for blob in blobs:
        blob = np.asarray(blob, dtype=np.float32)
        shape = len_field(7, packed_varints_field(1, blob.shape))
        parts.append(len_field(7, shape + packed_floats_field(5, blob.ravel())))
    return b"".join(parts)


def format_hint(head: bytes) -> str:
    """A guess at what a file that is not a caffemodel is, from its first bytes."""
    if head.startswith(b"PK\x03\x04"):
        return "It is a zip archive (a PyTorch .pt/.pth file?); load it with torch.load instead."
    if head.startswith(b"\x89HDF"):
        return "It is an HDF5 file; only binary protobuf .caffemodel files are supported."
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "It looks like a text file (a .prototxt?); pass the binary .caffemodel."
    return "The file is truncated or not a Caffe model; obtain it again."
