"""core.quality: the run report, its JSON in the pose file, and the loud refusal with a hint."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from core import pose_io, quality
from core.errors import PipelineError
from core.keypoints_io import load_keypoints


def test_longest_run():
    assert quality.longest_run([0, 1, 1, 0, 1, 1, 1, 0]) == (3, 4)
    assert quality.longest_run([0, 0]) == (0, -1)
    assert quality.longest_run([1, 1]) == (2, 0)


def _report(usable_fraction, T=100, crop=None):
    t = np.arange(T) / 25.0
    det = np.ones(T, bool)
    use = np.ones(T, bool)
    use[10:10 + int(round((1 - usable_fraction) * T))] = False
    return quality.assess(detected=det, usable=use, timestamps=t, fps=25.0, shots=[(0, 60), (60, T)],
                          upper_body=np.arange(T) < 5, rejected_by={"scale": int((~use).sum())}, crop=crop)


def test_assess_figures_and_lines():
    r = _report(0.6)
    assert (r.frames, r.detected, r.usable, r.rejected, r.longest_gap) == (100, 100, 60, 40, 40)
    assert r.longest_gap_start_s == pytest.approx(0.4) and r.shots == 2 and r.cut_times_s == [pytest.approx(2.4)]
    text = "\n".join(r.lines())
    assert "60.0% of 100 frames usable" in text and "rejected by the plausibility gate 40.0%: scale 40" in text
    assert "cuts at 2.40 s" in text and "legs out of frame in 5 frames" in text


def test_check_refuses_under_the_threshold_with_a_hint_unless_forced():
    r = _report(0.6)
    with pytest.raises(PipelineError) as e:
        r.check(0.7, source="clip.mp4")
    msg = e.value.message
    assert e.value.code == "no_detection" and msg.startswith("clip.mp4: only 60%")
    assert "--crop" in msg and "--start/--end" in msg and "0.40-2.00 s" in msg and "--force" in msg
    r.check(0.7, force=True)
    _report(0.8).check(0.7)
    with pytest.raises(PipelineError) as e:
        _report(0.5, crop=(1, 2, 3, 4)).check()
    assert "--crop X,Y" not in e.value.message   # a crop was given: the hint does not repeat it


def test_json_round_trip_and_pose_file(tmp_path, shared_data):
    r = _report(0.9)
    assert quality.QualityReport.from_json(r.to_json()) == r
    assert quality.QualityReport.from_json('{"frames": 1, "detected": 1, "rejected": 0, "usable": 1, '
                                           '"longest_gap": 0, "longest_gap_start_s": 0, "future": 3}').usable == 1
    with pytest.raises(ValueError):
        quality.QualityReport.from_json("[1]")
    p = load_keypoints(shared_data / "keypoints" / "lia_kim_dance" / "detectron2_raw.npz")
    T = len(p)
    p = replace(p, shots=[(0, 100), (100, T)], rejected=np.arange(T) % 7 == 0, upper_body=np.arange(T) < 3,
                quality=r.to_json())
    back = pose_io.load(pose_io.save(tmp_path / "q.npz", p))
    assert np.array_equal(back.shots, [[0, 100], [100, T]]) and np.array_equal(back.rejected, p.rejected)
    assert np.array_equal(back.upper_body, p.upper_body) and quality.QualityReport.from_json(back.quality) == r
    old = pose_io.load(pose_io.save(tmp_path / "old.npz", replace(p, shots=None, rejected=None, upper_body=None,
                                                                  quality="")))
    assert old.shots is None and old.rejected is None and old.quality == ""
    with pytest.raises(ValueError, match="shots"):
        replace(p, shots=[(0, 50), (60, T)])


def _motion(centre_step_units, pops_every=0, T=90):
    from core.motion import BoneMotion

    loc = np.zeros((T, 3))
    loc[:, 0] = np.cumsum(np.full(T, centre_step_units))
    q = np.tile([0.0, 0.0, 0.0, 1.0], (T, 1))
    if pops_every:
        q[::pops_every] = [0.0, 0.0, np.sin(np.pi / 4), np.cos(np.pi / 4)]   # 90° there and back
    return BoneMotion(frames=np.arange(T), rotations={"左腕": q}, locations={"センター": loc})


def test_motion_figures_and_the_refusal_of_a_motion_no_dancer_makes():
    ok = quality.motion_figures(_motion(0.1))                   # 0.1 unit a frame = 0.24 m/s
    assert ok["centre_speed_p99"] == pytest.approx(0.1 * 0.08 * 30) and ok["rotation_pops"] == 0
    r = replace(_report(0.9), **ok)
    r.check_motion()
    assert "centre speed 0.24 m/s" in "\n".join(r.lines())
    fast = replace(_report(0.9), **quality.motion_figures(_motion(3.0)))   # 7.2 m/s
    with pytest.raises(PipelineError, match="centre moves 7.2 m/s"):
        fast.check_motion(source="x.mp4")
    fast.check_motion(force=True)
    popping = replace(_report(0.9), **quality.motion_figures(_motion(0.1, pops_every=3)))
    assert popping.rotation_pops == 59
    with pytest.raises(PipelineError, match="bone turns over 45°"):
        popping.check_motion()
    # a short clip with a glitch or two: many per minute, but too few to call the detections wrong
    m = _motion(0.1)
    for pops in (1, quality.MIN_POPS_REFUSED - 1, quality.MIN_POPS_REFUSED):
        q = m.rotations["左腕"].copy()
        q[10:10 + 10 * pops:10] = [0.0, 0.0, np.sin(np.pi / 4), np.cos(np.pi / 4)]
        short = type(m)(frames=m.frames[:60], rotations={"左腕": q[:60]},
                        locations={"センター": m.locations["センター"][:60]})
        r = replace(_report(0.9), **quality.motion_figures(short))
        assert r.rotation_pops == 2 * pops                          # there and back
        if r.rotation_pops < quality.MIN_POPS_REFUSED:
            r.check_motion()
        else:
            with pytest.raises(PipelineError, match="bone turns over 45°"):
                r.check_motion()
