"""The closed loop: cases (motion x model x camera), renders, runs of the main job, and their evaluation.

``benchmarks/closed_loop.py`` is the command; this module does the work:

1. :func:`prepare_motion` retargets a held-out mocap clip (``tools/lifter_training/mocap.py``: ``split()["test"]``,
   ``load_clip``, ``to_mmd``) or densifies the real VMD dance (``motion_source.dense_from_vmd``) for a model.
2. :func:`ensure_render` renders it headless (``render.render_case``), cached by the case description.
3. :func:`run_job` runs the main job's CLI on the render once per lifter (a subprocess:
   ``python -m core estimate render.mp4 -o est.vmd --model M.pmx --lifter NAME``).
4. :func:`evaluate_run` applies the result back on the same model as MMD plays it (VMD -> ``BoneMotion.from_vmd``,
   Bézier keys sampled on every frame -> ``core.ik.evaluate_motion``: FK with the leg IK solved, the VMD's IK
   switches honoured -> ``CANONICAL`` joints) and compares it with the ground truth (``metrics``), after rotating the ground truth into
   the camera's heading (the frame the job writes its motion in, ``Camera.heading_rotation``).

Frames and units: ``core.conventions``; metric units in ``metrics``.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.closed_loop import metrics as M
from benchmarks.closed_loop.camera import Camera, framing_camera
from core import pose_io
from core.formats import pmx as pmx_format
from core.formats import vmd as vmd_format
from core.motion import BoneMotion
from core.rest_skeleton import RestSkeleton
from core.retarget import joints_from_pose, retarget

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
MODELS = {"mat4": DATA / "pmx" / "mat4_trace_model" / "mat4_v4_trace_model.pmx",
          "yw": DATA / "pmx" / "yw_test_model" / "yw_test_model.pmx"}
VMD_DANCE = DATA / "vmd" / "openmmd_output_sample.vmd"

__all__ = ["Case", "DEFAULT_CASES", "EXTRA_CASES", "TRAVEL_CASES", "CUT_CASES", "prepare_motion", "ensure_render", "run_job",
           "evaluate_run", "evaluate_oracle"]


@dataclass(frozen=True)
class Case:
    """One closed-loop case.

    Attributes:
        name: folder name.
        model: key of :data:`MODELS`.
        source: ``"vmd"`` (the OpenMMD dance) or a mocap clip name ``<dataset>/<stem>`` of the test split.
        yaw_deg, hfov_deg, height_m, size: camera (``camera.framing_camera``): yaw around the dancer (0 = in
            front), horizontal field of view, height above the floor (m), image (W, H) px.
        cut: ``()`` for one camera, or ``(frame, yaw_deg, hfov_deg, height_m)``: from that frame on the render
            cuts to a second camera (another angle and framing, as an edited dance video does); the ground truth
            stays in the first camera's heading, so a job that turns the dancer with the camera at the cut scores
            the turn.
    """

    name: str
    model: str
    source: str
    yaw_deg: float
    hfov_deg: float
    height_m: float
    size: tuple = (640, 640)
    shading: str = "studio"
    cut: tuple = ()

    def describe(self, frames: int) -> dict:
        d = {k: getattr(self, k) for k in ("name", "model", "source", "yaw_deg", "hfov_deg", "height_m", "shading")}
        d["size"] = list(self.size)
        d["frames"] = int(frames)
        if self.cut:
            d["cut"] = [float(v) for v in self.cut]   # only when set: the one-camera cases keep their cache keys
        return d


#: The default run: three cases, two models, three camera angles (about 150 frames each).
DEFAULT_CASES = (
    Case("vmd_dance_mat4", "mat4", "vmd", yaw_deg=20.0, hfov_deg=50.0, height_m=1.2),
    Case("cmu05_10_yw", "yw", "cmu_iclone/005_10", yaw_deg=-35.0, hfov_deg=60.0, height_m=1.5),
    Case("cmu05_05_mat4", "mat4", "cmu_iclone/005_05", yaw_deg=70.0, hfov_deg=40.0, height_m=0.9,
         size=(640, 480)),
)
#: More held-out cases (``--cases all``).
EXTRA_CASES = (
    Case("cmu05_15_yw_back", "yw", "cmu_iclone/005_15", yaw_deg=160.0, hfov_deg=55.0, height_m=1.3),
    Case("cmu05_20_mat4_flat", "mat4", "cmu_iclone/005_20", yaw_deg=-10.0, hfov_deg=35.0, height_m=1.6,
         shading="flat"),
    Case("bandai_walkturn_yw", "yw", "bandai_namco_2/dataset-2_walk-turn-left_feminine_026", yaw_deg=45.0,
         hfov_deg=70.0, height_m=1.0),
)
#: Held-out cases that travel: walks and a run, where a planted foot stays behind a body that moves on
#: (``--cases travel``; the foot lock's reach is what they test).
TRAVEL_CASES = (
    Case("cmu07_02_walk_mat4", "mat4", "cmu_iclone/007_02", yaw_deg=80.0, hfov_deg=60.0, height_m=1.2),
    Case("bandai_run_mat4", "mat4", "bandai_namco_2/dataset-2_run_youthful_014", yaw_deg=30.0, hfov_deg=55.0,
         height_m=1.0),
    Case("bandai_walk_happy_yw", "yw", "bandai_namco_1/dataset-1_walk_happy_001", yaw_deg=-60.0, hfov_deg=50.0,
         height_m=1.4),
    Case("cmu02_02_mat4", "mat4", "cmu_iclone/002_02", yaw_deg=-30.0, hfov_deg=45.0, height_m=1.1),
)
#: Held-out cases with a camera cut halfway (``--cases cuts``): the second shot sees the dancer from another angle
#: and distance, as edited dance videos do; the dancer's motion goes on through the cut.
CUT_CASES = (
    Case("cut_cmu05_20_mat4", "mat4", "cmu_iclone/005_20", yaw_deg=-20.0, hfov_deg=50.0, height_m=1.3,
         cut=(75, 55.0, 35.0, 1.0)),
    Case("cut_cmu07_02_walk_mat4", "mat4", "cmu_iclone/007_02", yaw_deg=60.0, hfov_deg=55.0, height_m=1.2,
         shading="flat", cut=(40, -15.0, 45.0, 1.5)),
)

#: Held-out cases filmed as a phone films a dance upright (``--cases portrait``): 9:16 frames, 39° across the short
#: side (about 65° across the long one), where a field of view assumed across the width is furthest off.
PORTRAIT_CASES = (
    Case("portrait_cmu05_05_mat4", "mat4", "cmu_iclone/005_05", yaw_deg=25.0, hfov_deg=39.0, height_m=1.2,
         size=(360, 640)),
    Case("portrait_cmu05_20_yw", "yw", "cmu_iclone/005_20", yaw_deg=-40.0, hfov_deg=39.0, height_m=1.4,
         size=(360, 640)),
)

#: The two yw dance cases again, motion and camera unchanged, on the textured mat4 model (``--cases textured``):
#: the faceless mannequin gives BlazePose no face, hair or clothes to tell a back from a front by, so these say how
#: much of the yw cases' error is that mannequin rather than the dance or the view.
TEXTURED_CASES = (
    Case("cmu05_10_mat4", "mat4", "cmu_iclone/005_10", yaw_deg=-35.0, hfov_deg=60.0, height_m=1.5),
    Case("cmu05_15_mat4_back", "mat4", "cmu_iclone/005_15", yaw_deg=160.0, hfov_deg=55.0, height_m=1.3),
)


def _mocap():
    sys.path.insert(0, str(REPO / "tools"))
    try:
        from lifter_training import mocap
    finally:
        sys.path.pop(0)
    return mocap


def _busiest_window(joints: np.ndarray, n: int, step: int = 15) -> int:
    """Start of the ``n``-frame window with the most joint motion (sum of joint speeds), on a ``step`` grid."""
    if len(joints) <= n:
        return 0
    speed = np.linalg.norm(np.diff(joints[:, :17], axis=0), axis=-1).sum(axis=1)
    c = np.concatenate([[0.0], np.cumsum(speed)])
    starts = np.arange(0, len(joints) - n + 1, step)
    return int(starts[np.argmax(c[starts + n - 1] - c[starts])])


def _slice(motion: BoneMotion, start: int, n: int) -> BoneMotion:
    sl = slice(start, start + n)
    return BoneMotion(frames=np.arange(len(motion.frames[sl])), rotations={k: v[sl] for k, v in motion.rotations.items()},
                      locations={k: v[sl] for k, v in motion.locations.items()}, model_name=motion.model_name,
                      meta=dict(motion.meta))


def prepare_motion(case: Case, rest: RestSkeleton, frames: int) -> tuple[BoneMotion, np.ndarray, str]:
    """The motion to render for ``case``: ``(BoneMotion (frames 0..n-1), joints (n, 27, 3) for framing, what)``.

    Raises:
        FileNotFoundError / ImportError: the clip or the mocap module is missing (the caller skips the case).
        ValueError: the mocap clip is not in the held-out test split.
    """
    if case.source == "vmd":
        from benchmarks.closed_loop.motion_source import dense_from_vmd
        m = _slice(dense_from_vmd(VMD_DANCE, first=0), 0, frames)
        pos, rot = rest.fk(m.rotations, m.locations)
        return m, joints_from_pose(rest, pos, rot), f"{VMD_DANCE.name}[0:{m.n_frames}]"
    mocap = _mocap()
    test = {f"{p.parent.name}/{p.stem}": p for p in mocap.split()["test"]}
    if case.source not in test:
        raise ValueError(f"{case.source} is not in the mocap test split (tools/lifter_training/mocap.py split())")
    clip = mocap.load_clip(test[case.source])
    start = _busiest_window(clip.joints, frames)
    seg = clip.joints[start:start + frames]
    motion, joints = mocap.to_mmd(seg, rest)
    motion = _slice(motion, 0, frames)
    return motion, joints, f"{case.source}[{start}:{start + len(seg)}]"


def ensure_render(case: Case, frames: int, cache: Path, *, log=print) -> Path:
    """Render ``case`` into ``cache/<name>-<hash>/`` unless that render exists; returns the folder.

    The folder holds ``render.mp4``, ``gt.npz`` (``render.ground_truth``), ``gt_motion.vmd`` and ``case.json``.
    Renders run in a subprocess (bpy stays out of this process).
    """
    desc = case.describe(frames)
    key = hashlib.sha1(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:10]
    d = Path(cache) / f"{case.name}-{frames}f-{key}"
    if (d / "gt.npz").is_file() and (d / "render.mp4").is_file() and (d / "case.json").is_file():
        return d
    d.mkdir(parents=True, exist_ok=True)
    (d / "request.json").write_text(json.dumps(desc))
    t0 = time.perf_counter()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.closed_loop.evaluate", "--render", str(d)], cwd=REPO,
                          env=env, capture_output=True, text=True, preexec_fn=_nice if os.name == "posix" else None)
    if proc.returncode != 0:
        raise RuntimeError(f"render of {case.name} failed: {(proc.stderr or proc.stdout).strip().splitlines()[-3:]}")
    log(f"[closed_loop] rendered {case.name}: {frames} frames in {time.perf_counter() - t0:.0f} s")
    return d


def _nice() -> None:
    os.nice(10)     # renders are long and CPU-bound: leave the machine to interactive work first


def _render_request(d: Path) -> None:
    """Subprocess side of :func:`ensure_render`."""
    from benchmarks.closed_loop.render import render_case
    desc = json.loads((d / "request.json").read_text())
    case = Case(desc["name"], desc["model"], desc["source"], desc["yaw_deg"], desc["hfov_deg"], desc["height_m"],
                tuple(desc["size"]), desc["shading"], tuple(desc.get("cut", ())))
    rest = RestSkeleton.from_pmx(pmx_format.read(MODELS[case.model]))
    motion, joints, what = prepare_motion(case, rest, desc["frames"])
    cam = framing_camera(joints, yaw_deg=case.yaw_deg, hfov_deg=case.hfov_deg, height_m=case.height_m,
                         width=case.size[0], height_px=case.size[1])
    cuts, more = [], {}
    if case.cut:
        frame, yaw, hfov, height = case.cut
        second = framing_camera(joints[int(frame):], yaw_deg=yaw, hfov_deg=hfov, height_m=height,
                                width=case.size[0], height_px=case.size[1])
        cuts = [(int(frame), second)]
        more = {"cut_frame": int(frame), "second_camera": second.to_dict()}
    render_case(MODELS[case.model], motion, cam, d, shading=case.shading, cuts=cuts)
    (d / "case.json").write_text(json.dumps({**desc, "motion": what, "camera": cam.to_dict(), **more}, indent=1))


@dataclass
class JobResult:
    ok: bool
    vmd: Path | None = None
    npz: Path | None = None
    seconds: float = 0.0
    reason: str = ""
    stderr: str = field(default="", repr=False)
    quality: list = field(default_factory=list)


def run_job(render_dir: Path, model: Path, lifter: str, out_dir: Path, *, cli_repo: Path = REPO,
            extra: tuple = ()) -> JobResult:
    """Run ``python -m core estimate`` on ``render_dir/render.mp4`` with ``--lifter lifter`` into ``out_dir``.

    Returns a :class:`JobResult`; ``ok`` False with ``reason`` when the CLI refuses the lifter (unknown name) or
    fails.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    vmd = out_dir / "est.vmd"
    for stale in (vmd, vmd.with_suffix(".npz")):
        stale.unlink(missing_ok=True)            # never score an earlier run's output
    force = ("--force",) if _cli_has(cli_repo, "--force") else ()   # score poor detections too (the quality gate)
    cmd = [sys.executable, "-m", "core", "estimate", str((render_dir / "render.mp4").resolve()), "-o",
           str(vmd.resolve()), "--model", str(Path(model).resolve()), "--lifter", lifter, "--overwrite", "--quiet",
           *force, *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cli_repo, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    dt = time.perf_counter() - t0
    err = (proc.stderr or "").strip()
    if proc.returncode != 0 or not vmd.is_file():
        lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("W0000", "I0000", "INFO"))]
        last = lines[-1] if lines else f"exit status {proc.returncode}"
        unknown = "invalid choice" in err or "unknown lifter" in err
        return JobResult(False, seconds=dt, reason=("unknown lifter: " if unknown else "job failed: ") + last,
                         stderr=err)
    return JobResult(True, vmd=vmd, npz=vmd.with_suffix(".npz"), seconds=dt, stderr=err,
                     quality=[ln.strip() for ln in err.splitlines() if ln.strip().startswith("quality:")])


_HELP_CACHE: dict = {}


def _cli_has(cli_repo: Path, option: str) -> bool:
    """Whether ``python -m core estimate --help`` in ``cli_repo`` lists ``option`` (older checkouts lack some)."""
    key = str(Path(cli_repo).resolve())
    if key not in _HELP_CACHE:
        proc = subprocess.run([sys.executable, "-m", "core", "estimate", "--help"], cwd=cli_repo, capture_output=True,
                              text=True)
        _HELP_CACHE[key] = proc.stdout
    return option in _HELP_CACHE[key].split()


def _load_gt(render_dir: Path):
    gt = dict(np.load(render_dir / "gt.npz"))
    heading = gt["heading"]
    joints = gt["joints"] @ heading.T            # into the camera's heading (what the job writes)
    gt_motion = BoneMotion.from_vmd(vmd_format.read(render_dir / "gt_motion.vmd"))
    return gt, joints, gt_motion


def _metrics(est_j, gt_j, est_rot, gt_rot) -> dict:
    floor = float(np.percentile(gt_j[:, [M._J[n] for n in M.FOOT_POINTS], 1].min(axis=1), 2))
    contact = M.foot_contacts(gt_j, floor=floor)   # the GT's own floor (a VMD may float a little)
    return {
        "mpjpe_mm": M.mpjpe(est_j, gt_j),
        "pa_mpjpe_mm": M.pa_mpjpe(est_j, gt_j),
        "mpjpe27_mm": M.mpjpe(est_j, gt_j, joints=np.arange(27)),          # feet, hand and ear points too
        "pa_mpjpe27_mm": M.pa_mpjpe(est_j, gt_j, joints=np.arange(27)),
        "root_error_mm": M.root_error(est_j, gt_j),
        "jitter_ms2": M.jitter(est_j), "jitter_gt_ms2": M.jitter(gt_j),
        "foot_skate_cms": M.foot_skate(est_j, contact), "foot_skate_gt_cms": M.foot_skate(gt_j, contact),
        "contact_fraction_gt": float(contact.mean()),
        "foot_height_error_cm": M.foot_height_error(est_j, gt_j, contact),
        "below_floor": M.below_floor(est_j), "below_floor_gt": M.below_floor(gt_j),
        "rotation_steps_gt45": M.rotation_steps(est_rot), "rotation_steps_gt45_gt": M.rotation_steps(gt_rot),
        "centre_speed_p99_ms": M.speed_p99(est_j), "centre_speed_p99_gt_ms": M.speed_p99(gt_j),
    }


def evaluate_run(render_dir: Path, job: JobResult, rest: RestSkeleton) -> dict:
    """Metrics of one job's output against the render's ground truth (see the module docstring)."""
    gt, gt_j, gt_motion = _load_gt(render_dir)
    from core import ik, vmd_sample

    written = vmd_format.read(job.vmd)
    est = BoneMotion.from_vmd(written)
    # what MMD shows: IK on (unless the VMD switches it off), CCD starting from the FK leg keys
    pos, rot = ik.evaluate_motion(rest, est, ik_enabled=vmd_sample.ik_switches(written, est.frames))
    est_all = joints_from_pose(rest, pos, rot)
    frames = est.frames
    keep = frames < len(gt_j)
    est_j = est_all[keep]
    g = gt_j[frames[keep]]
    out = _metrics(est_j, g, {k: v[keep] for k, v in est.rotations.items()},
                   {k: v[frames[keep]] for k, v in gt_motion.rotations.items()})
    out["frames"] = int(keep.sum())
    if job.npz is not None and job.npz.is_file():
        poses = pose_io.load(job.npz)
        kp = poses.keypoints_canonical_2d()
        n = min(len(kp), len(gt["joints_px"]))
        out["mediapipe_2d"] = M.error_2d(kp[:n], gt["joints_px"][:n])
        out["mediapipe_2d"]["mirrored_frames"] = float(np.mean(M.mirrored_2d(kp[:n], gt["joints_px"][:n]))) if n else 0.0
    out["job_seconds"] = job.seconds
    out["job_quality"] = job.quality
    return out


def evaluate_oracle(render_dir: Path, rest: RestSkeleton) -> dict:
    """The retargeting floor: the TRUE joints (in the camera heading) through ``core.retarget.retarget`` and back
    (what the job would score with a perfect 3D estimate)."""
    gt, gt_j, gt_motion = _load_gt(render_dir)
    m = retarget(gt_j, rest)
    pos, rot = rest.fk(m.rotations, m.locations)
    est_j = joints_from_pose(rest, pos, rot)
    out = _metrics(est_j, gt_j, m.rotations, gt_motion.rotations)
    out["frames"] = len(gt_j)
    return out


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--render":
        _render_request(Path(sys.argv[2]))
    else:
        sys.exit("usage: python -m benchmarks.closed_loop.evaluate --render DIR (internal; use benchmarks/closed_loop.py)")


def lift_diagnostic(render_dir: Path, runs: dict) -> dict:
    """The 3D lifting alone, before smoothing, levelling and retargeting: root-relative ``camera``-frame joints
    (metres) against the ground truth seen from the render camera, MPJPE / PA-MPJPE (mm, 17 H36M joints).

    Rows: each finished job's pose file (``joints_3d``: for ``native`` MediaPipe's world landmarks, for ``trained``
    the lifter on MediaPipe's 2D keypoints and world landmarks), and ``trained 2D-only on true 2D`` = the 2D-only
    weights (``core.lifting.trained.WEIGHTS_2D``) on the ground-truth pixels (confidence 0.95, the true field of
    view): what a 2D lifter does with a perfect detector; and, where the detector took the dancer's back for her
    front on some frames (``metrics.mirrored_2d``), the default lifting of the native run's pose file with those
    frames' left and right exchanged back (an oracle: it reads the truth).

    Args:
        runs: lifter name -> :class:`JobResult` of this render.
    """
    from core.conventions import METRES_PER_UNIT
    gt = dict(np.load(render_dir / "gt.npz"))
    if "R_frames" in gt:         # each frame seen from its own camera (a render with a cut)
        cam = np.einsum("tij,tkj->tki", gt["R_frames"], gt["joints"] - gt["cam_position_frames"][:, None]) \
            * METRES_PER_UNIT
    else:
        cam = (gt["joints"] - gt["cam_position"]) @ gt["R"].T * METRES_PER_UNIT
    cam = cam - cam[:, :1]
    out = {}

    def score(j3):
        n = min(len(j3), len(cam))
        e, g = np.asarray(j3[:n], dtype=np.float64), cam[:n]
        e = e - e[:, :1]
        return {"mpjpe_mm": M.mpjpe(e / METRES_PER_UNIT, g / METRES_PER_UNIT),
                "pa_mpjpe_mm": M.pa_mpjpe(e / METRES_PER_UNIT, g / METRES_PER_UNIT)}

    for name, job in runs.items():
        if job.ok and job.npz is not None and job.npz.is_file():
            poses = pose_io.load(job.npz)
            if poses.joints_3d is not None:
                out[f"{name} (MediaPipe 2D + 3D)" if name != "native" else "native (world landmarks)"] = score(poses.joints_3d)
    try:
        from core.lifting.trained import WEIGHTS_2D, load_lifter
    except ImportError:
        return out
    native = runs.get("native")
    if native is not None and native.ok and native.npz is not None and native.npz.is_file():
        # what the detector's front/back mistakes cost: MediaPipe's left/right exchange undone on the frames where
        # the truth says it is mirrored (metrics.mirrored_2d), then the default lifting; an oracle, for diagnosis
        from dataclasses import replace

        from core.skeletons import CANONICAL_MIRROR, MEDIAPIPE33, MEDIAPIPE33_MIRROR
        from core.worker import job as job_mod

        poses = pose_io.load(native.npz)
        kp_c = poses.keypoints_canonical_2d()
        n = min(len(kp_c), len(gt["joints_px"]))
        mir = np.zeros(len(poses), dtype=bool)
        mir[:n] = M.mirrored_2d(kp_c[:n], gt["joints_px"][:n])
        if poses.joint_names_2d == MEDIAPIPE33 and poses.joints_3d is not None and mir.any():
            k2, j3 = poses.keypoints_2d.copy(), poses.joints_3d.copy()
            k2[mir] = k2[mir][:, MEDIAPIPE33_MIRROR]
            j3[mir] = j3[mir][:, CANONICAL_MIRROR]
            fixed = job_mod.lift_trained(replace(poses, keypoints_2d=k2, joints_3d=j3, lifter="native"), None)
            out[f"trained, MediaPipe's {mir.mean():.0%} mirrored frames undone (oracle)"] = score(fixed.joints_3d)
    info = json.loads((render_dir / "case.json").read_text())
    kp = np.concatenate([gt["joints_px"], np.full(gt["joints_px"].shape[:2] + (1,), 0.95)], axis=-1)
    res = load_lifter(WEIGHTS_2D).lift(kp, tuple(int(v) for v in gt["image_size"]), hfov_deg=info["camera"]["hfov_deg"])
    out["trained 2D-only on true 2D"] = score(res.joints_3d)
    return out
