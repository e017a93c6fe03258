"""The on-disk record of one structure: raw numpy arrays behind a small JSON header, with a checksum.

Layout (little-endian)::

    b"MFSR"  magic (4 bytes)
    u32      header length H
    H bytes  header: JSON {"format": int, "info": {...}, "arrays": [[name, dtype, shape, offset, nbytes], ...]}
    payload  the arrays' bytes, one after the other (C order), at the offsets of the header
    32 bytes blake2b digest of everything before it

Nothing in a record is ever unpickled: dtypes are checked against :data:`ALLOWED_DTYPES` and arrays are read
with ``numpy.frombuffer``.  A record whose digest does not match (a flipped bit, a truncated write) raises
:class:`CorruptRecordError` naming the record.
"""

import hashlib
import json
import struct

import numpy as np

__all__ = ["RECORD_FORMAT", "ALLOWED_DTYPES", "CorruptRecordError", "encode_record", "decode_record"]

#: Version of the record layout and of the fields miniff writes into it (part of every record key).
RECORD_FORMAT = 1

#: The dtypes a record may hold.
ALLOWED_DTYPES = ("<f8", "<f4", "<i8", "<i4", "|b1")

_MAGIC = b"MFSR"
_DIGEST = 32


class CorruptRecordError(ValueError):
    """A store record that fails its checksum or cannot be parsed; ``key`` names it (hex)."""

    def __init__(self, key, detail):
        self.key = key
        super().__init__(f"store record {key}: {detail}; delete the store (or this record) and prepare it again")


def _digest(data):
    return hashlib.blake2b(data, digest_size=_DIGEST).digest()


def encode_record(arrays, info=None):
    """Serialise arrays into one record.

    Parameters
    ----------
    arrays : dict of str -> ndarray
        Any shapes; dtypes of :data:`ALLOWED_DTYPES` (others are converted: float -> ``<f8``, int -> ``<i8``).
    info : dict or None
        Small JSON-able metadata (strings, numbers).

    Returns
    -------
    bytes
    """
    entries, chunks, offset = [], [], 0
    for name, a in arrays.items():
        a = np.asarray(a)
        if a.dtype.kind == "f" and a.dtype.str not in ALLOWED_DTYPES:
            a = a.astype("<f8")
        elif a.dtype.kind in "iu" and a.dtype.str not in ALLOWED_DTYPES:
            a = a.astype("<i8")
        if a.dtype.str not in ALLOWED_DTYPES:
            raise TypeError(f"arrays[{name!r}] has dtype {a.dtype}; a record holds {ALLOWED_DTYPES}")
        data = np.ascontiguousarray(a).tobytes()
        entries.append([str(name), a.dtype.str, list(a.shape), offset, len(data)])
        chunks.append(data)
        offset += len(data)
    header = json.dumps({"format": RECORD_FORMAT, "info": info or {}, "arrays": entries},
                        separators=(",", ":")).encode()
    body = b"".join([_MAGIC, struct.pack("<I", len(header)), header, *chunks])
    return body + _digest(body)


def decode_record(data, key="?"):
    """Parse and verify a record.

    Parameters
    ----------
    data : bytes or memoryview
    key : str
        Its name in error messages.

    Returns
    -------
    arrays : dict of str -> ndarray
        Read-only views into ``data`` (copy them to modify).
    info : dict
    """
    data = memoryview(data)
    if len(data) < len(_MAGIC) + 4 + _DIGEST:
        raise CorruptRecordError(key, f"truncated ({len(data)} bytes)")
    body, digest = data[:-_DIGEST], bytes(data[-_DIGEST:])
    if bytes(body[:4]) != _MAGIC:
        raise CorruptRecordError(key, "not a miniff store record (bad magic)")
    if _digest(body) != digest:
        raise CorruptRecordError(key, "checksum mismatch (damaged or truncated)")
    (h,) = struct.unpack("<I", body[4:8])
    try:
        header = json.loads(bytes(body[8:8 + h]))
    except ValueError as err:
        raise CorruptRecordError(key, f"unreadable header ({err})") from None
    if header.get("format") != RECORD_FORMAT:
        raise CorruptRecordError(key, f"record format {header.get('format')}, this miniff reads {RECORD_FORMAT}")
    payload = body[8 + h:]
    arrays = {}
    for name, dtype, shape, offset, nbytes in header["arrays"]:
        if dtype not in ALLOWED_DTYPES or offset + nbytes > len(payload):
            raise CorruptRecordError(key, f"array {name!r} has an invalid header entry")
        a = np.frombuffer(payload[offset:offset + nbytes], dtype=np.dtype(dtype))
        arrays[name] = a.reshape(shape)
    return arrays, header["info"]
