"""The trained lifter inside the job: real 2D keypoints in, a plausible 3D body, a root path and foot contacts out."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from core import options, pose_io, skeletons
from core.errors import PipelineError
from core.worker import job

J = {n: i for i, n in enumerate(skeletons.CANONICAL)}


def test_real_detectron2_keypoints_lift_to_a_plausible_body(tmp_path, shared_data):
    """COCO-17 from a real 1920x1080 dance (no feet / hand points): every frame gets 3D, a root in front of the
    camera and contact probabilities, and the legs have human lengths."""
    src = shared_data / "keypoints" / "lia_kim_dance" / "detectron2_raw.npz"
    # its first 84 frames show nobody, so the quality gate would refuse the run: --force
    result = job.run_job(options.EstimateOptions(from_keypoints=str(src), output=str(tmp_path / "l.vmd"),
                                                 lifter="trained", force=True))
    poses = pose_io.load(result.npz_path)
    assert poses.lifter == "trained"
    j3 = poses.joints_3d
    assert np.isfinite(j3).all() and np.allclose(j3[:, 0], 0.0, atol=1e-6)
    thigh = np.linalg.norm(j3[:, J["LKnee"]] - j3[:, J["LHip"]], axis=1)
    shin = np.linalg.norm(j3[:, J["LFoot"]] - j3[:, J["LKnee"]], axis=1)
    # human-sized legs (the lifter learnt MMD models from child-sized to tall: 15-70 cm per bone)
    assert 0.15 < np.median(thigh) < 0.7 and 0.15 < np.median(shin) < 0.7
    # the head is above the hips in the camera frame (y down) on almost every frame: upright, not flipped
    assert np.mean(j3[:, J["Head"], 1] < j3[:, J["Hip"], 1]) > 0.95
    assert poses.trajectory is not None and np.all(poses.trajectory[:, 2] > 0.5)
    assert poses.contact_probs.shape == (len(poses), 4)
    assert ((poses.contact_probs >= 0) & (poses.contact_probs <= 1)).all()


def test_already_3d_keypoints_go_straight_to_retargeting_and_the_run_says_so(tmp_path, shared_data):
    """A VideoPose3D export holds 3D joints already: with the default lifter (trained) they are taken as they are,
    exactly as --lifter native takes them, with a note saying so; calling the lifter on them directly is refused
    with what to do."""
    src = shared_data / "keypoints" / "lia_kim_dance" / "videopose3d_export.npy"
    a = job.run_job(options.EstimateOptions(from_keypoints=str(src), output=str(tmp_path / "t.vmd")))
    b = job.run_job(options.EstimateOptions(from_keypoints=str(src), output=str(tmp_path / "n.vmd"), lifter="native"))
    assert (tmp_path / "t.vmd").read_bytes() == (tmp_path / "n.vmd").read_bytes()
    assert any("already 3D: taken as they are" in n for n in pose_io.load(a.npz_path).notes)
    from core import keypoints_io
    with pytest.raises(PipelineError, match="--lifter native"):
        job.lift_trained(keypoints_io.load_keypoints(src))
    assert b.npz_path is not None


def test_an_implausibly_fast_lifter_root_gives_way_to_the_fitted_one(tmp_path, shared_data):
    """--root auto takes the lifter's own root path, but where that path moves the centre faster than any dancer and
    the root fitted to the 2D does not, the job uses the fitted one and says so. Real keypoints: the lia_kim
    detectron2 keypoints (COCO-17, 2D-only weights, the dancer absent for the first 84 frames) give a lifter root at
    1.0 m/s at the 99th percentile, the fitted root 0.9 m/s; with the lifter's path shaking sideways (0.5 m at 1 Hz,
    a fault the motion stage's smoothing does not take out: the depth's own noise it does) it is 5.2 m/s. A plausible
    path (the lifter's with its depth held at the median) is kept as it is, and --root fit is left alone."""
    from core import keypoints_io, motion_stage, quality

    src = shared_data / "keypoints" / "lia_kim_dance" / "detectron2_raw.npz"
    poses = job.lift_trained(keypoints_io.load_keypoints(src))
    lifted = poses.trajectory
    shaking = lifted.copy()
    shaking[:, 0] += 0.5 * np.sin(2 * np.pi * (poses.timestamps - poses.timestamps[0]))
    poses = replace(poses, trajectory=shaking)
    rest, _ = motion_stage.load_rest(None)
    opts = options.EstimateOptions(output=str(tmp_path / "x.vmd"))
    fast = motion_stage.motion_stage(poses, rest, opts)
    assert quality.motion_figures(fast)["centre_speed_p99"] > quality.MAX_CENTRE_SPEED
    motion, out = job._plausible_root(poses, fast, rest, opts)
    assert quality.motion_figures(motion)["centre_speed_p99"] <= quality.MAX_CENTRE_SPEED
    assert any("root fitted to the 2D keypoints" in n for n in out.notes)
    _, untouched = job._plausible_root(poses, fast, rest, replace(opts, root="fit"))   # asked for: nothing to do
    assert untouched.notes == poses.notes
    steady = lifted * (np.median(lifted[:, 2]) / lifted[:, 2])[:, None]
    calm = replace(poses, trajectory=steady)
    plain = motion_stage.motion_stage(calm, rest, opts)
    assert quality.motion_figures(plain)["centre_speed_p99"] <= quality.MAX_CENTRE_SPEED
    kept, same = job._plausible_root(calm, plain, rest, opts)
    assert kept is plain and same.notes == calm.notes


def _frames(poses: pose_io.PoseSequence, a: int, b: int) -> pose_io.PoseSequence:
    """Frames a..b-1 of a 2D pose sequence (one shot)."""
    return replace(poses, keypoints_2d=poses.keypoints_2d[a:b], timestamps=poses.timestamps[a:b],
                   frame_indices=poses.frame_indices[a:b], detected=poses.detected[a:b], shots=None,
                   rejected=None, upper_body=None)


def test_each_shot_is_lifted_on_its_own(shared_data):
    """The lifter's window never looks across a cut: with shots, each shot's 3D, root and contacts are exactly what
    lifting that shot's frames alone gives (real detectron2 2D of a real dance)."""
    from core import keypoints_io

    poses = keypoints_io.load_detectron2_raw(shared_data / "keypoints" / "lia_kim_dance" / "detectron2_raw.npz")
    first = int(np.flatnonzero(poses.detected)[0])
    poses = job._fill(_frames(poses, first, first + 160))
    cut = 70
    split = job.lift_trained(replace(poses, shots=np.array([[0, cut], [cut, len(poses)]])))
    alone = job.lift_trained(_frames(poses, cut, len(poses)))
    whole = job.lift_trained(poses)
    np.testing.assert_allclose(split.joints_3d[cut:], alone.joints_3d, atol=1e-6)
    np.testing.assert_allclose(split.trajectory[cut:], alone.trajectory, atol=1e-6)
    np.testing.assert_allclose(split.contact_probs[cut:], alone.contact_probs, atol=1e-6)
    # across the cut the one-shot lifting differs: its window saw the frames of the other shot
    assert np.abs(whole.joints_3d[cut:cut + 10] - split.joints_3d[cut:cut + 10]).max() > 1e-3
