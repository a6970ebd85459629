"""Fixed-width cp932 (Windows-31J) names as stored in VMD files.

MMD_FACTS §1.2 (sources [MT] ``_decodeCp932String`` / exporter, [BM] and [YW] readers):

* the encoding is **cp932**, not Python's strict ``shift_jis`` (which maps 0x8160 to U+301C and
  cannot encode ``～`` U+FF5E);
* a name shorter than its field ends in NUL, a name that fills the field has no terminator, and
  the bytes after the first NUL may be filler (0xFD) -- so decoding stops at the first NUL;
* fields are cut by **bytes**, so a writer must not split a two-byte character (lead bytes
  0x81-0x9F and 0xE0-0xFC), and a reader must survive a lone lead byte (``errors="replace"``
  gives U+FFFD, as [MT] does).

Names cp932 cannot store (Hangul, most simplified Chinese, emoji) never make a write fail after the
work is done: :func:`check_encodable` says beforehand whether a name fits and what would be written
instead (the English name when one is given and fits, else the name with every such character
replaced by ``?``), and :func:`encode_name_fallback` writes that fallback and returns a note for the
user.

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


REPLACEMENT = "?"


def _unencodable(name: str) -> list:
    """The distinct characters of ``name`` that cp932 cannot store (NUL included: it would end the name)."""
    bad = []
    for ch in name:
        if ch in bad:
            continue
        if ch == "\0":
            bad.append(ch)
            continue
        try:
            ch.encode(ENCODING)
        except UnicodeEncodeError:
            bad.append(ch)
    return bad


def check_encodable(name: str, english: str = "") -> tuple:
    """Whether ``name`` can be stored in a cp932 name field, and what would be stored instead.

    Cheap (no I/O), for pre-flight checks before any work: e.g. ``check_encodable(pmx.header.name,
    pmx.header.name_en)``.

    Args:
        name: the name (model, bone, morph or IK bone name).
        english: an English alternative (e.g. the PMX ``name_en``), used as the fallback when it is
            non-empty and itself encodable.

    Returns:
        ``(ok, written)``: ``(True, name)`` when cp932 stores ``name``; otherwise ``(False, fallback)``
        with the English name, or ``name`` with each character cp932 lacks replaced by ``?`` (and NUL
        removed). Byte-length cuts are not fallbacks (names are cut as :func:`encode_name` does).

    Raises:
        TypeError: ``name`` or ``english`` is not a str.
    """
    if not isinstance(name, str) or not isinstance(english, str):
        raise TypeError(f"names must be str, got {type(name).__name__} / {type(english).__name__}")
    bad = _unencodable(name)
    if not bad:
        return True, name
    if english and not _unencodable(english):
        return False, english
    return False, "".join("" if ch == "\0" else (REPLACEMENT if ch in bad else ch) for ch in name)


def fallback_note(kind: str, name: str, written: str) -> str:
    """The one-line note shown when ``written`` was stored instead of ``name`` (``kind``: "model name"...)."""
    bad = [c for c in _unencodable(name) if c != "\0"]
    shown = "".join(bad[:5]) + ("..." if len(bad) > 5 else "")
    codes = ", ".join(f"U+{ord(c):04X}" for c in bad[:5])
    why = f"characters Shift-JIS (cp932) cannot store ({shown!r}: {codes})" if bad else "a NUL character"
    return (f"{kind} {name!r} has {why}, which a VMD file cannot hold (docs/MMD_FACTS.md §1.2); "
            f"wrote {written!r} instead")


def encode_name_fallback(name: str, nbytes: int, english: str = "", kind: str = "name") -> tuple:
    """:func:`encode_name`, writing the :func:`check_encodable` fallback instead of failing.

    Args:
        name, nbytes: as :func:`encode_name`.
        english: the English alternative (see :func:`check_encodable`).
        kind: what the name is, for the note (``"model name"``, ``"bone name"``...).

    Returns:
        ``(raw, note)``: the unpadded encoded bytes (``len <= nbytes``) and None, or the fallback's bytes
        and a one-line note for the user (:func:`fallback_note`).

    Raises:
        TypeError: ``name`` is not a str.  ValueError: ``nbytes`` < 1.
    """
    ok, written = check_encodable(name, english)
    if ok:
        return encode_name(name, nbytes), None
    return encode_name(written, nbytes), fallback_note(kind, name, written)


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
