"""Fuzz the PMX and VMD readers with mutated copies of every real file in ../shared/data (issue 7, item 7).

A fixed, seeded budget of 5,355 cases per run (25 real files plus one synthetic PMX 2.1 holding the sections no
real file has: every morph type, a soft body): byte flips, truncations, huge values patched into the count and
text-length fields the reader itself reports while parsing the original (so every count and length is hit),
out-of-range values in the index fields it reports (with every text turned into braces and line breaks half the time:
names end up in error messages), other valid header values (version 2.1, index sizes, encoding, the old VMD signature), random
32-bit patches, and deleted / duplicated spans. Each case must either parse or raise
``core.formats.errors.FormatError`` whose message is one line of at most 600 characters; nothing else (IndexError, MemoryError, struct.error, UnicodeDecodeError...),
and no case may take over 2 s or 500 MB (tracemalloc peak, numpy buffers included).

The cases run in a subprocess under ``RLIMIT_AS`` (3 GiB), so a reader that allocates for an absurd count fails the
test instead of exhausting the shared machine. ``python tests/core/formats/test_fuzz.py [--seed N]`` runs the same
budget and prints the figures.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
DATA = REPO.parent / "shared" / "data"
SEED = 20261201
#: Cases per file: the 3.9 MB model costs ~0.1 s a parse, the others a few ms.
BIG_FILE_BYTES = 1 << 20
CASES_BIG, CASES_PMX, CASES_VMD = 25, 230, 170
#: Per-case bounds: a hostile count must not make a reader hang or allocate without limit. The time bound is a hang
#: guard, not a speed target (a normal case takes ~0.1 s; 2.45 s was seen on the 2-core machine under training load),
#: so it is wide enough for a loaded machine.
MAX_SECONDS, MAX_BYTES = 10.0, 500 * 1024 * 1024
HUGE = (0x7FFFFFFF, 0xFFFFFFFF, 0x80000000, 0x40000000, 0x10000000, 0x00FFFFFF, 0x10000)


def real_files() -> list[Path]:
    return sorted(DATA.rglob("*.pmx")) + sorted(DATA.rglob("*.vmd"))


def synthetic_pmx21() -> bytes:
    """A small PMX 2.1 with every section the real files lack: all 11 morph types, display frames, rigid bodies,
    joints and a soft body (no shared file has a soft body, and only the 3.9 MB one has morphs). Names contain
    braces, which once broke the reader's error messages. Layout: docs/MMD_FACTS.md §3 (the reader's order)."""
    import struct as S

    def txt(t: str) -> bytes:
        b = t.encode("utf-16-le")
        return S.pack("<i", len(b)) + b

    f = lambda *v: S.pack(f"<{len(v)}f", *v)  # noqa: E731
    vi = lambda i: S.pack("<H", i)            # noqa: E731  vertex index: 2 bytes, unsigned
    bi = lambda i: S.pack("<h", i)            # noqa: E731  bone index: 2 bytes
    one = lambda i: S.pack("<b", i)           # noqa: E731  texture / material / morph / rigid: 1 byte
    out = [b"PMX ", f(2.1), bytes([8, 0, 1, 2, 1, 1, 2, 1, 1]), txt("合成{i}"), txt("synthetic {0}"),
           txt("comment {"), txt("}")]
    verts = []
    for k, dt in enumerate((0, 1, 2, 3, 4, 0)):
        v = f(k, k * 0.5, 0.1, 0, 1, 0, 0.5, 0.5) + f(0, 0, 0, 0) + bytes([dt])
        v += {0: bi(0), 1: bi(0) + bi(1) + f(0.3), 2: bi(0) + bi(1) + bi(2) + bi(-1) + f(0.4, 0.3, 0.3, 0),
              3: bi(0) + bi(1) + f(0.5) + f(0, 0, 0, 0, 1, 0, 0, -1, 0), 4: bi(1) + bi(2) + bi(0) + bi(1) + f(
                  0.25, 0.25, 0.25, 0.25)}[dt]
        verts.append(v + f(1.0))
    out += [S.pack("<i", 6)] + verts
    out += [S.pack("<i", 6)] + [vi(i) for i in (0, 1, 2, 3, 4, 5)]
    out += [S.pack("<i", 2), txt("tex\\a{.png"), txt("toon}.bmp")]
    out += [S.pack("<i", 2)]
    for k, (shared, toon) in enumerate(((1, b"\x03"), (0, one(1)))):
        out += [txt(f"mat{k}{{"), txt(f"m{{i}}{k}"), f(1, 1, 1, 1), f(0, 0, 0), f(5), f(0.2, 0.2, 0.2), b"\x1f",
                f(0, 0, 0, 1), f(1), one(0), one(-1), b"\x01", bytes([shared]), toon, txt("memo {x}"),
                S.pack("<i", 3)]
    bones = [
        (txt("センター{"), txt("center"), f(0, 0, 0), bi(-1), S.pack("<i", 0), S.pack("<H", 0x001E), f(0, 1, 0)),
        (txt("上半身}"), txt("upper{i}"), f(0, 1, 0), bi(0), S.pack("<i", 0), S.pack("<H", 0x0C1B), bi(2),
         f(1, 0, 0), f(1, 0, 0), f(0, 0, 1)),
        (txt("付与"), txt("append"), f(0, 2, 0), bi(1), S.pack("<i", 1), S.pack("<H", 0x331A), f(0, 1, 0), bi(1), f(0.5),
         S.pack("<i", 7)),
        (txt("足ＩＫ"), txt("leg IK"), f(1, 0, 0), bi(0), S.pack("<i", 0), S.pack("<H", 0x003E), f(0, 0, 1), bi(2),
         S.pack("<i", 40), f(2.0), S.pack("<i", 2), bi(1), b"\x01", f(-3, 0, 0), f(0, 0, 0), bi(0), b"\x00"),
    ]
    out += [S.pack("<i", len(bones))] + [b"".join(b) for b in bones]
    morphs = [
        (0, [one(1) + f(1.0), one(2) + f(0.5)]),                        # group
        (1, [vi(0) + f(0, 0.1, 0), vi(5) + f(0.1, 0, 0)]),              # vertex
        (2, [bi(1) + f(0, 0, 0) + f(0, 0, 0, 1)]),                      # bone
        (3, [vi(1) + f(0.1, 0, 0, 0)]), (4, [vi(2) + f(0, 0.1, 0, 0)]), (5, [vi(3) + f(0, 0, 0.1, 0)]),
        (6, [vi(4) + f(0, 0, 0, 0.1)]), (7, [vi(0) + f(0.1, 0.1, 0, 0)]),
        (8, [one(-1) + b"\x00" + f(*([1.0] * 28)), one(1) + b"\x01" + f(*([0.0] * 28))]),   # material
        (9, [one(0) + f(1.0)]),                                          # flip
        (10, [one(0) + b"\x01" + f(0, 1, 0) + f(0, 0, 1)]),              # impulse
    ]
    out += [S.pack("<i", len(morphs))]
    for k, (t, recs) in enumerate(morphs):
        out += [txt(f"モーフ{{{k}}}"), txt(f"morph {{i}} {k}"), S.pack("<b", 4), S.pack("<b", t),
                S.pack("<i", len(recs))] + recs
    out += [S.pack("<i", 2), txt("Root"), txt("Root{"), b"\x01", S.pack("<i", 1), b"\x00" + bi(0),
            txt("表情"), txt("Exp}"), b"\x01", S.pack("<i", 2), b"\x01" + one(1), b"\x00" + bi(3)]
    rigid = lambda nm, b, mode: (txt(nm) + txt(nm + "_en") + bi(b) + b"\x02" + S.pack("<H", 0xFFFE) + b"\x01"  # noqa
                                 + f(1, 1, 1) + f(0, 1, 0) + f(0, 0, 0) + f(1, 0.5, 0.5, 0, 0.5) + bytes([mode]))
    out += [S.pack("<i", 2), rigid("剛体{a}", 0, 0), rigid("剛体}b", -1, 1)]
    out += [S.pack("<i", 1), txt("ジョイント{"), txt("joint{0}"), b"\x00", one(0), one(1)] + [f(0, 0, 0)] * 8
    out += [S.pack("<i", 1), txt("ソフト{i}"), txt("soft}"), b"\x00", one(0), b"\x01", S.pack("<H", 0xFFFF),
            b"\x03", S.pack("<i", 2), S.pack("<i", 0), f(1.0), f(0.05), S.pack("<i", 1), f(*([0.5] * 12)),
            f(*([0.1] * 6)), S.pack("<4i", 1, 1, 0, 4), S.pack("<3i", 1, 1, 1),
            S.pack("<i", 2), one(0) + vi(0) + b"\x00", one(1) + vi(3) + b"\x01", S.pack("<i", 2), vi(1), vi(2)]
    return b"".join(out)


def _fields(kind: str, data: bytes) -> dict:
    """Where the reader finds counts, text lengths and indices in the original file (it is instrumented for one parse).

    Returns ``{"counts": [offset...], "texts": [(offset, length)...], "indices": {"single": [(offset, size)...],
    "records": [(offset, count, stride, size)...]}}``.
    """
    from core.formats import pmx, vmd
    from core.formats.errors import FormatError

    found = {"counts": [], "texts": [], "indices": {"single": [], "records": []}}
    if kind == "pmx":
        cur_cls = pmx._Cursor
        saved = cur_cls.count, cur_cls.text, cur_cls.index, pmx._struct_records, pmx._read_index_array

        def count(self, what, min_record, _f=saved[0]):
            found["counts"].append(self.pos)
            return _f(self, what, min_record)

        def text(self, what, lenient=False, _f=saved[1]):
            at = self.pos
            out = _f(self, what, lenient)
            found["counts"].append(at)
            found["texts"].append((at + 4, self.pos - at - 4))
            return out

        def index(self, kind_, what, count=None, _f=saved[2]):
            found["indices"]["single"].append((self.pos, self.isize[kind_]))
            return _f(self, kind_, what, count)

        def struct_records(cur, kind_, fields, count, what, _f=saved[3]):
            out = _f(cur, kind_, fields, count, what)
            stride = np.dtype([("i", f"V{cur.isize[kind_]}")] + fields).itemsize
            found["indices"]["records"].append((int(out[2][0]) if count else cur.pos, count, stride,
                                                cur.isize[kind_]))
            return out

        def read_index_array(cur, kind_, count, what, _f=saved[4]):
            at = cur.pos
            out = _f(cur, kind_, count, what)
            found["indices"]["records"].append((at, count, cur.isize[kind_], cur.isize[kind_]))
            return out

        cur_cls.count, cur_cls.text, cur_cls.index = count, text, index
        pmx._struct_records, pmx._read_index_array = struct_records, read_index_array
        try:
            pmx.loads(data)
        except FormatError:
            pass  # joint_orient_test.pmx is malformed as shipped: the fields before the fault still count
        finally:
            cur_cls.count, cur_cls.text, cur_cls.index = saved[:3]
            pmx._struct_records, pmx._read_index_array = saved[3:]
    else:
        saved = vmd._Reader.u32

        def u32(self, what, _f=saved):
            if "count" in what:
                found["counts"].append(self.pos)
            return _f(self, what)

        vmd._Reader.u32 = u32
        try:
            vmd.loads(data)
        finally:
            vmd._Reader.u32 = saved
    found["indices"]["records"] = [r for r in found["indices"]["records"] if r[1] > 0]
    return found


def _bad_index(buf: bytearray, fields: dict, rng: np.random.Generator) -> str:
    """Write an out-of-range value into one index slot; a region kind is drawn first so rare kinds get hit."""
    single, records = fields["indices"]["single"], fields["indices"]["records"]
    if records and (not single or rng.random() < 0.6):
        at, count, stride, size = records[int(rng.integers(0, len(records)))]
        at += stride * int(rng.integers(0, count))
    elif single:
        at, size = single[int(rng.integers(0, len(single)))]
    else:
        return "no index"
    v = int(rng.choice([(1 << (8 * size - 1)) - 1, -2, -1 - int(rng.integers(1, 100)), int(rng.integers(1, 300))]))
    buf[at:at + size] = (v & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
    return f"index at {at} ({size} bytes) = {v}"


def _braces(buf: bytearray, fields: dict, encoding_utf16: bool) -> None:
    """Rewrite every text as braces and line breaks of the same byte length: names end up inside error messages,
    which must stay one line and never be taken for format strings."""
    enc = "utf-16-le" if encoding_utf16 else "utf-8"
    for at, n in fields["texts"]:
        pattern = ("{\n}" * n).encode(enc)[:n]
        pattern = pattern[:len(pattern) - len(pattern) % (2 if encoding_utf16 else 1)]
        buf[at:at + len(pattern)] = pattern


_PMX_21 = np.float32(2.1).tobytes()
_VMD_OLD = b"Vocaloid Motion Data file".ljust(30, b"\0")


def _semantic(data: bytes, kind: str, rng: np.random.Generator) -> tuple[bytes, str]:
    """Mutations a random flip rarely finds: other valid header values, so later sections are misread."""
    buf = bytearray(data)
    r = rng.random()
    if kind == "pmx":
        if r < 0.35:   # PMX 2.1: the reader then expects a soft-body section after the joints
            tail = rng.integers(0, 256, size=int(rng.integers(0, 200)), dtype=np.uint8).tobytes()
            if rng.random() < 0.5:
                tail = (int(rng.integers(0, 4))).to_bytes(4, "little") + tail
            return bytes(buf[:4]) + _PMX_21 + bytes(buf[8:]) + tail, f"version 2.1 + {len(tail)} tail bytes"
        k = int(rng.integers(0, 8))
        v = int(rng.choice([0, 1, 2, 4, 3, 8])) if k != 1 else int(rng.integers(0, 6))
        buf[9 + k] = v  # globals: encoding, additional UVs, index sizes
        return bytes(buf), f"global {k} = {v}"
    if r < 0.5:
        return _VMD_OLD + data[30:], "old signature (10-byte model name)"
    tail = rng.integers(0, 256, size=int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    return data + tail, f"{len(tail)} trailing bytes"


def mutate(data: bytes, fields: dict, rng: np.random.Generator, kind: str = "pmx") -> tuple[bytes, str]:
    """One mutated copy of ``data`` and a description that reproduces it."""
    n = len(data)
    r = rng.random()
    buf = bytearray(data)
    if kind == "pmx" and rng.random() < 0.2:
        how = _bad_index(buf, fields, rng)
        if rng.random() < 0.5:
            _braces(buf, fields, data[9] == 0)
            how += " + braces and line breaks in every text"
        return bytes(buf), how
    if r < 0.10:
        return _semantic(data, kind, rng)
    if r < 0.30:
        k = int(rng.integers(1, 9))
        pos = rng.integers(0, n, size=k)
        for p in pos:
            buf[p] ^= int(rng.integers(1, 256))
        return bytes(buf), f"flip {k} bytes at {pos.tolist()}"
    if r < 0.45:
        cut = int(rng.integers(0, n))
        return data[:cut], f"truncate to {cut}"
    counts = fields["counts"]
    if r < 0.75 and counts:
        at = int(counts[int(rng.integers(0, len(counts)))])
        v = int(HUGE[int(rng.integers(0, len(HUGE)))]) if rng.random() < 0.7 else int(rng.integers(n // 2, 4 * n + 8))
        buf[at:at + 4] = v.to_bytes(4, "little")
        return bytes(buf), f"count/length field at {at} = {v:#x}"
    if r < 0.85:
        at = int(rng.integers(0, max(n - 4, 1)))
        v = int(rng.integers(0, 1 << 32))
        buf[at:at + 4] = v.to_bytes(4, "little")
        return bytes(buf[:n]), f"u32 at {at} = {v:#x}"
    a = int(rng.integers(0, n))
    b = int(min(n, a + rng.integers(1, 64)))
    if rng.random() < 0.5:
        return data[:a] + data[b:], f"delete {a}:{b}"
    return data[:b] + data[a:b] + data[b:], f"duplicate {a}:{b}"


def run(seed: int = SEED) -> dict:
    """Run the whole budget; returns the figures (see the module docstring)."""
    from core.formats import pmx, vmd
    from core.formats.errors import FormatError

    files = real_files()
    seeds = [(p.name, p.suffix.lower()[1:], p.read_bytes()) for p in files]
    seeds.append(("synthetic_pmx21_all_sections.pmx", "pmx", synthetic_pmx21()))
    prepared = []
    for name, kind, data in seeds:
        budget = CASES_BIG if len(data) > BIG_FILE_BYTES else (CASES_PMX if kind == "pmx" else CASES_VMD)
        prepared.append((name, kind, data, _fields(kind, data), budget))
    tracemalloc.start()
    out = {"seed": seed, "files": len(files), "cases": 0, "parsed": 0, "format_errors": 0, "failures": [],
           "max_seconds": 0.0, "max_seconds_case": "", "max_peak": 0, "max_peak_case": "", "count_fields": 0}
    t_all, cpu_all = time.perf_counter(), time.process_time()
    for name, kind, data, fields, budget in prepared:
        out["count_fields"] += len(fields["counts"])
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        loads = pmx.loads if kind == "pmx" else vmd.loads
        for i in range(budget):
            mutated, how = mutate(data, fields, rng, kind)
            case = f"{name} #{i}: {how}"
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            t0 = time.perf_counter()
            try:
                loads(mutated, name=name)
                out["parsed"] += 1
            except FormatError as e:
                out["format_errors"] += 1
                text = str(e)
                if "\n" in text or "\r" in text or len(text) > 600:
                    out["failures"].append(f"{case}: FormatError message is not one short line: {text[:300]!r}")
            except BaseException as e:  # noqa: BLE001 - that is the point: anything else is a failure
                if isinstance(e, KeyboardInterrupt):
                    raise
                out["failures"].append(f"{case}: {type(e).__name__}: {str(e)[:200]}")
            dt = time.perf_counter() - t0
            peak = tracemalloc.get_traced_memory()[1] - base
            out["cases"] += 1
            if dt > out["max_seconds"]:
                out["max_seconds"], out["max_seconds_case"] = dt, case
            if peak > out["max_peak"]:
                out["max_peak"], out["max_peak_case"] = peak, case
    out["total_seconds"] = time.perf_counter() - t_all
    out["cpu_seconds"] = time.process_time() - cpu_all
    return out


# ------------------------------------------------------------------------------------------------ the test
def _limit_memory():
    import resource
    try:
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
    except (ValueError, OSError):  # a platform without RLIMIT_AS (macOS refuses it): the tracemalloc bound still holds
        pass


@pytest.mark.skipif(sys.platform == "win32", reason="the isolation uses resource limits (POSIX only)")
def test_fuzz_pmx_and_vmd_readers(shared_data):
    files = real_files()
    assert sum(p.suffix == ".pmx" for p in files) >= 18 and sum(p.suffix == ".vmd" for p in files) >= 7
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, __file__, "--json"], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=600, preexec_fn=_limit_memory)
    assert proc.returncode == 0, f"the fuzz run crashed (rc {proc.returncode}): {proc.stderr[-3000:]}"
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["cases"] >= 5000
    assert r["count_fields"] > 1000  # the structure-aware mutations really found the counts and lengths
    assert r["format_errors"] > r["cases"] // 2  # most mutations must be detected
    assert not r["failures"], f"{len(r['failures'])} cases raised something else than FormatError:\n" + \
        "\n".join(r["failures"][:20])
    assert r["max_seconds"] <= MAX_SECONDS, f"slowest case {r['max_seconds']:.2f} s: {r['max_seconds_case']}"
    assert r["max_peak"] <= MAX_BYTES, f"largest case {r['max_peak'] / 2**20:.0f} MiB: {r['max_peak_case']}"


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else SEED
    result = run(seed)
    if "--json" in sys.argv:
        result["failures"] = result["failures"][:200]
        print(json.dumps(result))
    else:
        for k, v in result.items():
            if k != "failures":
                print(f"{k}: {v}")
        print(f"failures: {len(result['failures'])}")
        for f in result["failures"][:40]:
            print("  ", f)
