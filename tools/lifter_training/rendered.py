"""Real detector input for the lifter: MediaPipe run on headless renders of mocap TRAIN clips (docs/lifter.md §3b).

The synthetic 2D of :mod:`.synth` reproduces the detector's measured error *statistics*, not its errors themselves:
which pose BlazePose misreads, how its world landmarks tilt with the view, how a dark mannequin's front and back get
confused. Here the real detector is run on renders, so the lifter can also train on its real errors:

1. **Cases** (:func:`make_cases`, deterministic for a seed): a window of ``frames`` frames of a clip of the mocap
   TRAIN split (``mocap.split()["train"]``; never a held-out clip, and never the OpenMMD dance VMD that the
   closed-loop benchmark plays) retargeted onto one of the shared PMX models, rendered (``benchmarks.closed_loop.
   render.render_case``) from a random camera (``tools/measure_detector_noise.py``'s ranges: hfov 30..90°, yaw all
   around, 0.6..2.0 m high, roll ±6°, three image shapes) with studio or flat (anime-like) shading, at random.
2. **Detect**: the main job's CLI, MediaPipe at its defaults (``measure_detector_noise.render_and_detect``).
3. **Pairs** (:func:`load_case`): the pose file's ``CANONICAL`` 2D keypoints and MediaPipe's world landmarks, made
   into the lifter's features exactly as ``core.worker.job.lift_trained`` does (``normalise_keypoints``,
   ``world_features``), against the model's true joints in the render camera's frame (``core.conventions``
   ``camera``, metres, Hip-relative), the root-depth term ``d``, the world's up direction and the contact labels
   (``dataset.contact_labels``). Each case also gives its mirror image (image x -> w - x, left <-> right) and a copy
   normalised with the assumed 60° field of view (the job's default when the true one is unknown).

Validation: whole clips (:func:`is_validation`: a fixed hash of the clip name) are kept out of the rendered training
windows and measure the fine-tune (:func:`evaluate_rendered`), so the checkpoint is chosen on renders the network did
not see, without touching the benchmark's held-out clips.
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.conventions import METRES_PER_UNIT
from core.lifting.trained import _CONTACT_MIRROR, _MIRROR, focal_px, normalise_keypoints, world_features

from . import dataset

__all__ = ["RenderedCase", "make_cases", "render_all", "load_case", "load_all", "is_validation", "sample_windows",
           "evaluate_rendered", "limb_correlation", "DEFAULT_CACHE"]

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = Path("/work/cache/lifter_rendered")
ASSUMED_HFOV = 60.0


def _noise_tool():
    sys.path.insert(0, str(REPO / "tools"))
    import measure_detector_noise as mdn    # noqa: E402 (a tool script, imported for its case helpers)
    return mdn


def is_validation(clip: str) -> bool:
    """True for the clips (about 1 in 7, fixed by a hash of the name) whose renders only validate."""
    return int(hashlib.sha1(clip.encode()).hexdigest(), 16) % 7 == 0


def make_cases(n_cases: int, n_frames: int, seed: int) -> list[dict]:
    """``n_cases`` cases (module docstring, step 1): dicts with name, model, source, clip, motion, camera, shading.

    Raises:
        RuntimeError: the mocap clips cannot be read (``../shared/data/mocap`` missing).
    """
    from core.formats import pmx as pmx_format
    from core.rest_skeleton import RestSkeleton
    from . import mocap

    mdn = _noise_tool()
    train = list(mocap.split()["train"])
    if not train:
        raise RuntimeError(f"no mocap TRAIN clips under {mocap.MOCAP_DIR}")
    rng = np.random.default_rng(seed)
    rests = {k: RestSkeleton.from_pmx(pmx_format.read(p)) for k, p in mdn.MODELS.items()}
    cases = []
    for i in range(n_cases):
        model = list(mdn.MODELS)[i % len(mdn.MODELS)]
        clip, motion, joints, source = mdn.mocap_window(rng, mocap, train, n_frames, rests[model], tries=50)
        cam = mdn._random_camera(rng, rests[model], joints)
        shading = "flat" if rng.random() < 0.4 else "studio"
        cases.append({"name": f"r{seed}_{i:03d}_{model}", "model": model, "clip": clip, "shading": shading,
                      "source": source, "motion": motion, "camera": cam})
    return cases


def render_all(cases: list[dict], cache: Path, cli_repo: Path, log=print) -> list[Path]:
    """Render and detect every case (cached: a finished case folder is reused); returns the case folders.

    A case the job refuses (its quality check: the dancer leaves the picture, too few frames detected) is skipped
    with the reason, marked ``refused.txt`` in its folder: the training pairs are what the job accepts.
    """
    mdn = _noise_tool()
    out = []
    for c in cases:
        refused = Path(cache) / c["name"] / "refused.txt"
        if refused.is_file():
            continue
        try:
            d = mdn.render_and_detect(c, Path(cache), Path(cli_repo), shading=c["shading"])
        except RuntimeError as e:
            refused.write_text(str(e) + "\n")
            log(f"[rendered] {c['name']} {c['source']}: skipped ({e})")
            continue
        meta = d / "rendered.json"
        if not meta.is_file():
            meta.write_text(json.dumps({"clip": c["clip"], "shading": c["shading"], "model": c["model"]}))
        out.append(d)
        log(f"[rendered] {c['name']} {c['source']} {c['shading']}")
    return out


@dataclass
class RenderedCase:
    """One rendered case as lifter training pairs, in four input versions (true / assumed field of view, direct /
    mirrored). ``features[(assumed, mirrored)]``: ``(T, 166)`` float32; ``target[mirrored]``: ``(T, 27, 3)`` float32
    camera metres, Hip-relative; ``d (T,)``; ``up[mirrored] (3,)``; ``contacts[mirrored] (T, 4)`` float32."""

    name: str
    clip: str
    model: str
    features: dict
    target: dict
    d: np.ndarray
    up: dict
    contacts: dict
    #: the lifter's raw input as the job passes it: ``keypoints (T, 27, 3)`` px, ``world (T, 27, 3)``,
    #: ``present (T,)``, ``size (w, h)``
    raw: dict


def load_case(d: Path) -> RenderedCase:
    """The training pairs of one finished case folder (module docstring, step 3).

    Raises:
        ValueError: the pose file has no world landmarks (not a MediaPipe run) or no frame the lifter can use.
    """
    from core import pose_io
    d = Path(d)
    gt = dict(np.load(d / "gt.npz"))
    info = json.loads((d / "rendered.json").read_text())
    poses = pose_io.load(d / "est.npz")
    world = poses.backend_3d()
    if world is None:
        raise ValueError(f"{d}: the pose file keeps no MediaPipe world landmarks")
    kp = poses.keypoints_canonical_2d().astype(np.float64)
    t = min(len(kp), len(gt["joints"]))
    kp, world, present = kp[:t], np.asarray(world[:t], dtype=np.float64), np.asarray(poses.detected[:t], dtype=bool)
    size = np.asarray(gt["image_size"], dtype=np.float64)
    f_true = float(gt["K"][0, 0])
    cam = (gt["joints"][:t] - gt["cam_position"]) @ gt["R"].T * METRES_PER_UNIT
    root = cam[:, 0]
    target = cam - root[:, None]
    up = gt["R"] @ np.array([0.0, 1.0, 0.0])
    up = up / np.linalg.norm(up)
    contacts = dataset.contact_labels(gt["joints"][:t]).astype(np.float32)
    _, _, scale, valid = normalise_keypoints(kp, size, focal=f_true)
    if not valid.any():
        raise ValueError(f"{d}: no frame with enough detected joints")
    dd = np.log(np.maximum(root[:, 2], 0.05) * scale)
    flip = np.array([-1.0, 1.0, 1.0])
    mkp = kp[:, _MIRROR].copy()
    mkp[..., 0] = size[0] - mkp[..., 0]
    mworld = world[:, _MIRROR] * flip
    feats = {}
    for assumed in (False, True):
        f = focal_px(size, ASSUMED_HFOV) if assumed else f_true
        for mirrored in (False, True):
            k, w = (mkp, mworld) if mirrored else (kp, world)
            x, *_ = normalise_keypoints(k, size, focal=f)
            feats[(assumed, mirrored)] = np.concatenate([x, world_features(w, t, present)], axis=1)
    return RenderedCase(name=d.name, clip=info["clip"], model=info["model"], features=feats,
                        target={False: target.astype(np.float32), True: (target[:, _MIRROR] * flip).astype(np.float32)},
                        d=dd.astype(np.float32), up={False: up, True: up * flip},
                        contacts={False: contacts, True: contacts[:, _CONTACT_MIRROR]},
                        raw={"keypoints": kp, "world": world, "present": present, "size": size})


def load_all(cache: Path, models=None, log=print) -> list[RenderedCase]:
    """Every finished case folder under ``cache`` (optionally only those of ``models``)."""
    out = []
    for p in sorted(Path(cache).glob("*/rendered.json")):
        if not (p.parent / "est.npz").is_file():
            continue
        c = load_case(p.parent)
        if models is None or c.model in models:
            out.append(c)
    log(f"[rendered] {len(out)} cases ({sum(len(c.d) for c in out)} frames) from {cache}")
    return out


def sample_windows(rng: np.random.Generator, cases: list[RenderedCase], n: int, out_frames: int, rf: int,
                   p_assumed_fov: float = 0.5):
    """``n`` training windows of ``W = out_frames + rf - 1`` frames (indices clipped at the clip's ends, as
    inference pads them): dict of ``features (n, W, 166)``, ``target (n, W, 27, 3)``, ``d (n, W)``, ``up (n, 3)``,
    and ``contacts (n, out_frames, 4)``, ``mask (n, out_frames)`` for the centre outputs. Each window is the
    direct or the mirrored view (even odds), normalised with the true or (``p_assumed_fov``) the assumed field of
    view: the job assumes 60° on every video, so half of the windows see what it sees."""
    w = out_frames + rf - 1
    half = rf // 2
    lens = np.array([len(c.d) for c in cases], dtype=np.float64)
    out = {k: [] for k in ("features", "target", "d", "up", "contacts", "mask")}
    for ci in rng.choice(len(cases), size=n, p=lens / lens.sum()):
        c = cases[ci]
        t = len(c.d)
        start = int(rng.integers(0, max(t - out_frames, 0) + 1))
        x = start + np.arange(w) - half
        idx = np.clip(x, 0, t - 1)
        mir = bool(rng.random() < 0.5)
        assumed = bool(rng.random() < p_assumed_fov)
        out["features"].append(c.features[(assumed, mir)][idx])
        out["target"].append(c.target[mir][idx])
        out["d"].append(c.d[idx])
        out["up"].append(c.up[mir])
        xo = x[half:half + out_frames]
        out["contacts"].append(c.contacts[mir][np.clip(xo, 0, t - 1)])
        out["mask"].append((xo >= 0) & (xo <= t - 1))
    return {k: np.stack(v) for k, v in out.items()}


def evaluate_rendered(lifter, cases: list[RenderedCase]) -> dict:
    """The exported numpy lifter on whole rendered cases, as the job lifts a video (the field of view unknown, so
    60° assumed; test-time flip; no output smoothing): MPJPE and PA-MPJPE (mm, root-relative, 27 joints, camera
    frame), up-direction error (degrees), contact accuracy, per model and overall."""
    from .train import pa_mpjpe
    rows = []
    for c in cases:
        r = c.raw
        out = lifter.lift(r["keypoints"], r["size"], None, smooth_sigma=0.0, world_3d=r["world"],
                          world_present=r["present"], flip=True)
        g = c.target[False].astype(np.float64)
        err = np.linalg.norm(out.joints_3d - g, axis=-1).mean(1)
        pa = pa_mpjpe(out.joints_3d, g)
        upe = np.full(len(g), np.nan) if out.up is None else np.degrees(np.arccos(np.clip(out.up @ c.up[False], -1, 1)))
        acc = ((out.contacts > 0.5) == (c.contacts[False] > 0.5)).mean(1)
        rows.append((c.model, err, pa, upe, acc))

    def agg(sel):
        r = [x for x in rows if sel(x[0])]
        if not r:
            return None
        e, p, u, a = (np.concatenate([x[k] for x in r]) for k in (1, 2, 3, 4))
        return {"mpjpe_mm": 1000 * float(e.mean()), "pa_mpjpe_mm": 1000 * float(p.mean()),
                "up_err_deg": float(np.nanmean(u)) if np.isfinite(u).any() else math.nan,
                "contact_acc": float(a.mean()), "frames": int(e.size), "cases": len(r)}
    return {"all": agg(lambda m: True), **{m: agg(lambda x, m=m: x == m) for m in sorted({r[0] for r in rows})}}


def limb_correlation(cache: Path) -> dict:
    """Correlation of MediaPipe's 2D errors between neighbouring joints of a limb on the rendered cases under
    ``cache``: ``{"arm": elbow-wrist, "leg": knee-ankle}``, both sides pooled. Errors are detection minus the true
    projection (``gt.npz`` ``joints_px``) in units of the true 2D box height, detected frames only, each case's
    mean error removed (the systematic offsets are modelled on their own), x and y pooled; the value feeds
    ``synth.NoiseModel.limb_corr``.

    Raises:
        ValueError: no finished case under ``cache``.
    """
    from core import pose_io
    from core.skeletons import CANONICAL
    j = {n: i for i, n in enumerate(CANONICAL)}
    pairs = {"arm": (("LElbow", "LWrist"), ("RElbow", "RWrist")), "leg": (("LKnee", "LFoot"), ("RKnee", "RFoot"))}
    acc = {k: ([], []) for k in pairs}
    n = 0
    for p in sorted(Path(cache).glob("*/rendered.json")):
        if not (p.parent / "est.npz").is_file():
            continue
        gt = np.load(p.parent / "gt.npz")
        poses = pose_io.load(p.parent / "est.npz")
        det = poses.keypoints_canonical_2d().astype(np.float64)
        t = min(len(det), len(gt["joints_px"]))
        g = gt["joints_px"][:t]
        e = (det[:t, :, :2] - g) / (g[..., 1].max(1) - g[..., 1].min(1))[:, None, None]
        e = e[poses.detected[:t]]
        e = e - np.nanmean(e, axis=0)
        for k, sides in pairs.items():
            for a, b in sides:
                x, y = e[:, j[a]].ravel(), e[:, j[b]].ravel()
                ok = np.isfinite(x) & np.isfinite(y)
                acc[k][0].append(x[ok])
                acc[k][1].append(y[ok])
        n += 1
    if not n:
        raise ValueError(f"no finished rendered case under {cache}")
    return {k: round(float(np.corrcoef(np.concatenate(x), np.concatenate(y))[0, 1]), 3) for k, (x, y) in acc.items()}


def main(argv=None) -> int:
    """``python -m tools.lifter_training.rendered [--cases N] [--frames F] [--seed S] [--cache DIR] [--cli-repo DIR]``:
    render and detect the cases (the fine-tune's input, docs/lifter.md §4)."""
    import argparse
    ap = argparse.ArgumentParser(description="Render mocap TRAIN clips on the shared models and run MediaPipe on "
                                             "them: real detector input for the lifter's fine-tune")
    ap.add_argument("--cases", type=int, default=96)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--cli-repo", type=Path, default=REPO,
                    help="checkout whose 'python -m core estimate' runs the detector (default: this one)")
    ap.add_argument("--limb-correlation", action="store_true",
                    help="render nothing: print the limb correlation of the 2D errors over the finished cases")
    a = ap.parse_args(argv)
    if a.limb_correlation:
        print(json.dumps(limb_correlation(a.cache)))
        return 0
    cases = make_cases(a.cases, a.frames, a.seed)
    dirs = render_all(cases, a.cache, a.cli_repo, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"[rendered] {len(dirs)} cases in {a.cache}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
