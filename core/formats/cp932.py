"""Fixed-width cp932 (Windows-31J) names as stored in VMD files.

MMD_FACTS §1.2 (sources [MT] ``_decodeCp932String`` / exporter, [BM] and [YW] readers):

* the encoding is **cp932**, not Python's strict ``shift_jis`` (which maps 0x8160 to U+301C and
  cannot encode ``～`` U+FF5E);
* a name shorter than its field ends in NUL, a name that fills the field has no terminator, and
  the bytes after the first NUL may be filler (0xFD) -- so decoding stops at the first NUL;
* fields are cut by **bytes**, so a writer must not split a two-byte character (lead bytes
  0x81-0x9F and 0xE0-0xFC), and a reader must survive a lone lead byte (``errors="replace"``
  gives U+FFFD, as [MT] does).

numpy and the standard library only (imported by Blender).
"""
from __future__ import annotations

import numpy as np

ENCODING = "cp932"


def _is_lead_byte(b: int) -> bool:
    """True for a cp932 double-byte lead byte (0x81-0x9F, 0xE0-0xFC)."""
    return 0x81 <= b <= 0x9F or 0xE0 <= b <= 0xFC


def encode_name(name: str, nbytes: int) -> bytes:
    """Encode ``name`` to cp932 and cut it to at most ``nbytes`` bytes at a character boundary.

    Args:
        name: the name (e.g. ``"左足ＩＫ"``). Must not contain NUL.
        nbytes: field width in bytes (15 for VMD bone/morph names, 20 for model and IK names).

    Returns:
        The encoded bytes, **unpadded**, ``len <= nbytes``. A 16-byte name of 8 kanji cut to 15
        bytes gives 14 bytes (7 kanji), never a dangling lead byte (MMD_FACTS §1.2).

    Raises:
        TypeError: ``name`` is not a str.
        ValueError: ``nbytes`` < 1, ``name`` contains NUL, or a character has no cp932 code
            (the message names the character and the name).
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be str, got {type(name).__name__}: {name!r}")
    if nbytes < 1:
        raise ValueError(f"nbytes must be >= 1, got {nbytes}")
    if "\0" in name:
        raise ValueError(f"name {name!r} contains a NUL character, which would end it early")
    try:
        raw = name.encode(ENCODING)
    except UnicodeEncodeError as exc:
        bad = name[exc.start:exc.end]
        codes = ", ".join(f"U+{ord(c):04X}" for c in bad)
        raise ValueError(
            f"name {name!r}: character {bad!r} ({codes}) cannot be encoded in cp932 "
            f"(MMD stores VMD names in cp932; MMD_FACTS §1.2)"
        ) from None
    if len(raw) <= nbytes:
        return raw
    i = 0
    while i < len(raw):
        step = 2 if _is_lead_byte(raw[i]) else 1
        if i + step > nbytes:
            break
        i += step
    return raw[:i]


def decode_name(raw: bytes) -> str:
    """Decode a fixed-width cp932 name field: stop at the first NUL, ``errors="replace"``.

    Args:
        raw: the field bytes (any length; trailing filler after a NUL is ignored).

    Returns:
        The name; an undecodable byte (e.g. a lead byte left by a byte cut) becomes U+FFFD.
    """
    return bytes(raw).split(b"\0", 1)[0].decode(ENCODING, errors="replace")


def decode_names(column: np.ndarray) -> np.ndarray:
    """Vectorised :func:`decode_name` over a column of fixed-width names.

    Each distinct byte string is decoded once (``np.unique`` + inverse index), so decoding
    100,000 keys of 20 bones costs 20 decodes.

    Args:
        column: (K,) array of dtype ``S<n>`` (e.g. ``keys["name"]``).

    Returns:
        (K,) object array of str.

    Raises:
        ValueError: ``column`` is not a 1-D bytes (``S``) array.
    """
    column = np.asarray(column)
    if column.ndim != 1 or column.dtype.kind != "S":
        raise ValueError(f"expected a 1-D bytes array (dtype S<n>), got shape {column.shape} "
                         f"dtype {column.dtype}")
    if column.size == 0:
        return np.empty(0, dtype=object)
    uniq, inverse = np.unique(column, return_inverse=True)
    decoded = np.empty(len(uniq), dtype=object)
    decoded[:] = [decode_name(u) for u in uniq.tolist()]
    return decoded[inverse.reshape(-1)]
