"""PNG for the run folder's frames and the images sent to workers, on zlib-ng.

Writing a frame is mostly zlib's deflate: at 512x512 a 16-bit blended frame took 28 ms through
OpenCV (zlib level 1, run-length strategy, "up" filter), and OpenCV cannot be given another
zlib. So the file is put together here with the same settings: every row filtered "up" (its
byte-wise difference from the row above; the first row's "above" is zeros, so it stays as it
is), one IDAT chunk, run-length deflate at level 1, by zlib-ng: 12 ms, the same size. Any PNG
reader reads it; bench/png_speed.py measures it against OpenCV.

Reading such a file back (read_own_png) takes about half of what OpenCV takes: zlib-ng
inflates, and the "up" filter is undone a row at a time. Any other PNG is left to a general reader.
"""

from __future__ import annotations

import struct

import numpy as np
from zlib_ng import zlib_ng

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPE = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type: grey, RGB, RGBA
_CHANNELS = {colour: channels for channels, colour in _COLOUR_TYPE.items()}
_UP = 2  # the PNG row filter that subtracts the row above
_IHDR = struct.Struct(">IIBBBBB")  # width, height, bit depth, colour type, compression, filter, interlace
_CHUNK_HEAD = struct.Struct(">I4s")  # length, kind
_BAND_ROWS = 64


def encode_png(pixels: np.ndarray) -> bytes:
    """uint8 or uint16 pixels, HxW (grey) or HxWxC with C 3 (RGB) or 4 (RGBA), as PNG bytes."""
    if pixels.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"PNG pixels must be uint8 or uint16, not {pixels.dtype}")
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if channels not in _COLOUR_TYPE:
        raise ValueError(f"PNG pixels must have 1, 3 or 4 channels, not {channels}")
    big = pixels.dtype.newbyteorder(">")
    packer = zlib_ng.compressobj(1, zlib_ng.DEFLATED, 15, 9, zlib_ng.Z_RLE)
    parts, above = [], np.zeros(width * channels * pixels.dtype.itemsize, np.uint8)
    for top in range(0, height, _BAND_ROWS):  # a band at a time: the filter's copies are a band's, not a frame's
        rows = np.ascontiguousarray(pixels[top : top + _BAND_ROWS].astype(big, copy=False))
        rows = rows.reshape(len(rows), -1).view(np.uint8)
        filtered = np.empty((len(rows), len(above) + 1), np.uint8)
        filtered[:, 0] = _UP
        np.subtract(rows[0], above, out=filtered[0, 1:])  # uint8: wraps modulo 256, as PNG's filter does
        np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
        parts.append(packer.compress(filtered))
        above = rows[-1]
    parts.append(packer.flush())
    header = _IHDR.pack(width, height, pixels.dtype.itemsize * 8, _COLOUR_TYPE[channels], 0, 0, 0)
    return b"".join([SIGNATURE, _chunk(b"IHDR", header), *_chunk_parts(b"IDAT", parts), _chunk(b"IEND", b"")])


def read_own_png(data: bytes) -> np.ndarray | None:
    """The pixels of a PNG as encode_png writes it (uint8 or big-endian uint16, HxW or HxWxC);
    None for any other PNG (other chunks, filters or interlacing) and for a damaged one, which
    a general reader then reads or rejects. zlib checks the pixels' own checksum."""
    parsed = _header_and_data(data)
    if parsed is None:
        return None
    (width, height, depth, colour, _, _, interlace), compressed = parsed
    channels = _CHANNELS.get(colour)
    if depth not in (8, 16) or channels is None or interlace:
        return None
    try:
        raw = zlib_ng.decompress(compressed)
    except zlib_ng.error:
        return None
    row_bytes = width * channels * depth // 8
    if len(raw) != height * (row_bytes + 1):
        return None
    filtered = np.frombuffer(raw, np.uint8).reshape(height, row_bytes + 1)
    if not (filtered[:, 0] == _UP).all():
        return None
    rows = np.empty((height, row_bytes), np.uint8)
    rows[0] = filtered[0, 1:]
    for y in range(1, height):  # a row at a time: numpy's cumsum down the columns is ten times slower
        np.add(rows[y - 1], filtered[y, 1:], out=rows[y])
    pixels = rows.view(">u2" if depth == 16 else np.uint8)
    return pixels.reshape(height, width, channels) if channels > 1 else pixels.reshape(height, width)


def _header_and_data(data: bytes) -> tuple[tuple[int, ...], bytes] | None:
    """IHDR's fields and the joined IDAT chunks of a PNG with only IHDR, IDAT and IEND; else None."""
    if not data.startswith(SIGNATURE):
        return None
    view, pos, header, parts = memoryview(data), len(SIGNATURE), None, []
    while pos + _CHUNK_HEAD.size <= len(data):
        length, kind = _CHUNK_HEAD.unpack_from(data, pos)
        body = view[pos + _CHUNK_HEAD.size : pos + _CHUNK_HEAD.size + length]
        pos += _CHUNK_HEAD.size + length + 4
        if kind == b"IHDR" and length == _IHDR.size:
            header = _IHDR.unpack(body)
        elif kind == b"IDAT":
            parts.append(body)
        elif kind == b"IEND":
            return (header, b"".join(parts)) if header is not None else None
        else:
            return None
    return None  # cut short before IEND


def _chunk(kind: bytes, data: bytes) -> bytes:
    return b"".join(_chunk_parts(kind, [data]))


def _chunk_parts(kind: bytes, parts: list[bytes]) -> list[bytes]:
    """A chunk as pieces, its data left in the pieces given: joined once, with the file."""
    crc = zlib_ng.crc32(kind)
    for part in parts:
        crc = zlib_ng.crc32(part, crc)
    return [struct.pack(">I", sum(map(len, parts))), kind, *parts, struct.pack(">I", crc)]
