"""The trained lifter inside the job: real 2D keypoints in, a plausible 3D body, a root path and foot contacts out."""
from __future__ import annotations

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


def test_already_3d_keypoints_are_refused_with_what_to_do(tmp_path, shared_data):
    src = shared_data / "keypoints" / "lia_kim_dance" / "videopose3d_export.npy"
    with pytest.raises(PipelineError, match="--lifter native"):
        job.run_job(options.EstimateOptions(from_keypoints=str(src), output=str(tmp_path / "l.vmd"),
                                            lifter="trained"))
    assert list(tmp_path.iterdir()) == []
