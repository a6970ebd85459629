"""Names Shift-JIS (cp932) cannot store never fail a VMD write after the work is done (issue 7, item 3).

They are written with a fallback (the English name when given, else ``?`` for each such character) and a note;
``check_encodable`` says so beforehand, for pre-flight checks. Real files: the OpenMMD VMD and the yw test PMX.
"""
from __future__ import annotations

import struct
import warnings

import numpy as np
import pytest

from core.formats import cp932, pmx, vmd
from core.motion import BoneMotion

KOREAN = "김민지 댄스 모델"          # Hangul: no cp932 code at all
CHINESE = "简体中文模型"              # simplified: 简 and 体... partly absent from cp932
EMOJI = "ミク😀"


@pytest.mark.parametrize("name, english, expect", [
    ("初音ミク", "", (True, "初音ミク")),
    ("～①髙", "", (True, "～①髙")),              # cp932 extensions Python's strict shift_jis lacks
    (KOREAN, "Minji dance", (False, "Minji dance")),
    (KOREAN, "", (False, "??? ?? ??")),
    (KOREAN, "민지", (False, "??? ?? ??")),      # an English name that does not fit either: replacement
    (CHINESE, "", (False, "?体中文模型")),
    (EMOJI, "Miku", (False, "Miku")),
    (EMOJI, "", (False, "ミク?")),
])
def test_check_encodable(name, english, expect):
    assert cp932.check_encodable(name, english) == expect


def test_a_korean_model_name_is_written_as_its_english_name_with_a_note(shared_data, tmp_path):
    """OpenMMD's real motion (222 bone keys) re-written for a model with a Korean name."""
    motion = vmd.read(shared_data / "vmd" / "openmmd_output_sample.vmd")
    motion.model_name, motion.model_name_raw, motion.model_name_en = KOREAN, None, "Minji dance"
    assert vmd.name_notes(motion) and "Minji dance" in vmd.name_notes(motion)[0]   # pre-flight knows
    notes: list = []
    out = vmd.write(tmp_path / "minji.vmd", motion, notes=notes)
    back = vmd.read(out)
    assert back.model_name == "Minji dance"
    assert np.array_equal(back.bone_keys, motion.bone_keys) and len(back.bone_keys) == len(motion.bone_keys)
    assert len(notes) == 1 and KOREAN in notes[0] and "'Minji dance'" in notes[0] and "U+AE40" in notes[0]
    assert "\n" not in notes[0]


def test_bone_motion_to_vmd_with_a_korean_model_name_writes(tmp_path):
    """What the pipeline does last (core.motion.BoneMotion.to_vmd then vmd.write): no failure, one note."""
    t = 5
    motion = BoneMotion(frames=np.arange(t), rotations={"センター": np.tile([0.0, 0.0, 0.0, 1.0], (t, 1))},
                        locations={"センター": np.zeros((t, 3))}, model_name=KOREAN)
    notes: list = []
    back = vmd.read(vmd.write(tmp_path / "p.vmd", motion.to_vmd(), notes=notes))
    assert back.model_name == "??? ?? ??" and len(back.bone_keys) == t and len(notes) == 1


@pytest.mark.parametrize("name, written", [(KOREAN, "??? ?? ??"), (CHINESE, "?体中文模型"), (EMOJI, "ミク?")])
def test_without_an_english_name_the_characters_are_replaced(name, written, tmp_path):
    keys = vmd.make_bone_keys("センター", [0, 1], None, [[0, 0, 0, 1]] * 2)
    notes: list = []
    p = vmd.write(tmp_path / "m.vmd", vmd.VmdMotion(name, bone_keys=keys), notes=notes)
    raw = p.read_bytes()[30:50]
    assert raw == written.encode("cp932")[:20].ljust(20, b"\0")
    assert vmd.read(p).model_name == written[:len(raw.rstrip(b"\0").decode("cp932"))]
    assert len(notes) == 1 and repr(written) in notes[0]


def test_a_pmx_with_a_korean_name_is_caught_before_any_work(shared_data):
    """Pre-flight: a real PMX whose model name is made Korean; check_encodable offers its English name."""
    data = (shared_data / "pmx" / "yw_test_model" / "yw_test_model.pmx").read_bytes()
    n_globals = data[8]
    at = 9 + n_globals
    assert data[9] == 0  # UTF-16LE text
    old_len = struct.unpack_from("<i", data, at)[0]
    name = KOREAN.encode("utf-16-le")
    patched = data[:at] + struct.pack("<i", len(name)) + name + data[at + 4 + old_len:]
    model = pmx.loads(patched, name="korean.pmx")
    assert model.header.name == KOREAN and model.header.name_en
    ok, written = cp932.check_encodable(model.header.name, model.header.name_en)
    assert not ok and written == model.header.name_en
    ok, _ = cp932.check_encodable(pmx.loads(data).header.name)
    assert ok


def test_bone_names_get_distinct_fallbacks(tmp_path):
    names = ["センター", "왼팔", "오른팔", "팔", "손", "?"]
    notes: list = []
    keys = vmd.make_bone_keys(names, [0] * 6, None, [[0, 0, 0, 1]] * 6, english_names={"팔": "arm"}, notes=notes)
    got = vmd.decode_names(keys["name"]).tolist()
    assert got[0] == "センター" and got[1] == "??" and got[2] == "???" and got[3] == "arm" and got[5] == "?"
    assert got[4] == "?_2"  # '손' -> '?' would be the real bone '?': made distinct
    assert len(set(got)) == 6 and len(notes) == 4 and all("bone name" in n for n in notes)
    back = vmd.loads(vmd.dumps(vmd.VmdMotion("m", bone_keys=keys), notes=[]))
    assert vmd.decode_names(back.bone_keys["name"]).tolist() == got


def test_ik_names_in_property_keys_fall_back_too():
    key = vmd.PropertyKey(frame=0, visible=True, ik_states=[("左足ＩＫ", True), ("왼발IK", False)])
    notes: list = []
    back = vmd.loads(vmd.dumps(vmd.VmdMotion("m", property_keys=[key]), notes=notes))
    assert back.property_keys[0].ik_states == [("左足ＩＫ", True), ("??IK", False)]
    assert len(notes) == 1 and "IK bone name" in notes[0]


def test_without_a_notes_list_the_note_is_a_warning(tmp_path):
    with pytest.warns(vmd.NameFallbackWarning, match="U\\+1F600"):
        vmd.write(tmp_path / "w.vmd", vmd.VmdMotion(EMOJI))
    with pytest.warns(vmd.NameFallbackWarning, match="bone name"):
        vmd.make_bone_keys("팔", [0], None, [[0, 0, 0, 1]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vmd.dumps(vmd.VmdMotion("初音ミク"))  # nothing to say: no warning


def test_strict_names_still_refuses(tmp_path):
    with pytest.raises(ValueError, match="U\\+1F600"):
        vmd.dumps(vmd.VmdMotion(EMOJI), strict_names=True)
    with pytest.raises(ValueError, match="cp932"):
        vmd.make_bone_keys(["腕😀"], [0], None, [[0, 0, 0, 1]], strict_names=True)
    with pytest.raises(ValueError):
        vmd.write(tmp_path / "s.vmd", vmd.VmdMotion(EMOJI), strict_names=True)
    assert not (tmp_path / "s.vmd").exists()
