"""A foot down on one point and flat on the floor stands on its whole sole (``core.contact.flat_feet``), on a real
video: the kunkun clip through MediaPipe and the trained lifter onto mat4, played back as MMD plays the VMD."""
from __future__ import annotations

import numpy as np
import pytest

from core import contact, ik, options, pose_io, vmd_sample
from core.conventions import METRES_PER_UNIT, MMD_FPS
from core.formats import pmx, vmd
from core.motion import BoneMotion
from core.rest_skeleton import RestSkeleton
from core.retarget import joints_from_pose
from core.worker import job


@pytest.fixture(scope="module")
def kunkun(tmp_path_factory, shared_data):
    for mod in ("mediapipe", "av", "cv2"):
        pytest.importorskip(mod, reason=f"{mod} is part of the worker environment (tools/install_deps.py)")
    out = tmp_path_factory.mktemp("flat_feet")
    model = shared_data / "pmx" / "mat4_trace_model" / "mat4_v4_trace_model.pmx"
    job.run_job(options.EstimateOptions(video=str(shared_data / "videos" / "kunkun_dance_864x480_25fps.mp4"),
                                        output=str(out / "detected.vmd"), npz=str(out / "poses.npz"),
                                        model=str(model)))
    return out, model, RestSkeleton.from_pmx(pmx.read(model))


def _run(out, model, rest, name):
    r = job.run_job(options.EstimateOptions(from_npz=str(out / "poses.npz"), output=str(out / f"{name}.vmd"),
                                            npz=str(out / f"{name}.npz"), model=str(model)))
    written = vmd.read(r.vmd_path)
    m = BoneMotion.from_vmd(written)
    pos, rot = ik.evaluate_motion(rest, m, ik_enabled=vmd_sample.ik_switches(written, m.frames))
    return pose_io.load(r.npz_path), contact.foot_points(joints_from_pose(rest, pos, rot)) * METRES_PER_UNIT


def test_the_other_point_of_a_flat_planted_foot_stands_still(kunkun, monkeypatch):
    out, model, rest = kunkun
    on_poses, on = _run(out, model, rest, "on")
    with monkeypatch.context() as m:
        m.setattr(contact, "flat_feet", lambda c, h, t, **kw: (np.asarray(c, bool), np.zeros(np.shape(c), bool)))
        off_poses, off = _run(out, model, rest, "off")
    added = on_poses.foot_contacts & ~off_poses.foot_contacts
    assert not (off_poses.foot_contacts & ~on_poses.foot_contacts).any()      # only ever adds
    assert added.sum() >= 10                    # kunkun: a heel left swinging beside its planted toe, and back
    # the added frames at the 30 fps keys; speeds as central differences along the floor (MMD y is up)
    t = on_poses.timestamps - on_poses.timestamps[0]
    key = np.round(t * MMD_FPS).astype(int)
    for k in range(4):
        f = key[added[:, k]]
        f = f[(f > 0) & (f < len(on) - 1)]
        if len(f) < 5:
            continue
        speed = lambda j: np.linalg.norm(j[f + 1, k][:, [0, 2]] - j[f - 1, k][:, [0, 2]], axis=-1) * MMD_FPS / 2  # noqa: E731
        assert speed(on).mean() < 0.02, contact.CONTACT_POINTS[k]           # m/s: standing
        assert speed(off).mean() > 0.05, contact.CONTACT_POINTS[k]          # it swung about the planted point
