"""Hard input, end to end: does every clip end in a plausible motion or a clear refusal? (issue 10)

Runs ``python -m core estimate`` (as a user would) on the shared videos and on clips built from them that stand for
the held-out failure cases, then prints per clip: exit status, frames usable / detected / rejected (the run's
quality report, ``core.quality``), shots, frames with the legs out of frame, the centre speed p99 (m/s) and
rotation pops of the written motion, or the first line of the refusal.

Built clips (written to ``--work``; H.264/MPEG-4 at 25 fps, 640 px wide):

* ``closeup_open``: 1 s of a head-and-shoulders close-up of the anime dancer (the top of the animated half,
  enlarged), then a cut to 3 s of her full body (a VTuber clip that opens with a close-up);
* ``spliced``: 2 s each of kunkun, the figure skater and the anime dancer, one after the other (shot cuts, a new
  scale and place in each shot);
* ``zoom``: kunkun with the camera zooming in 1.8x over 4 s (the body grows without walking);
* ``recut``: kunkun, 2 s of the wide shot and then a cut to a 1.6x closer shot of the same dance going on (an
  edited video's cut to a medium shot: the dancer must not jump, nor turn, at the cut);
* ``dropout``: the anime dancer with 40% of the frames blacked out (a clip the detector cannot follow: it must be
  refused);
* ``side_by_side``: the shared side-by-side clip as it is (the still half must be found).

Usage: ``.venv/bin/python benchmarks/bench_hard_input.py [--work DIR] [--repo REPO] [--only NAME,...]``
(``--repo`` runs another checkout's CLI on the same clips, for before/after figures.)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data" / "videos"
ANIME = DATA / "anime_dance_sidebyside_1536x768_25fps.mp4"
KUNKUN = DATA / "kunkun_dance_864x480_25fps.mp4"
SKATER = DATA / "figure_skater_1280x720_25fps.mp4"


def _frames(path, n, crop=None, start=0):
    from core.worker import video

    out = []
    for i, f in enumerate(video.iter_frames(path, crop=crop)):
        if i >= start:
            out.append(f.image)
        if len(out) == n:
            break
    return out


def _fit(img, w=640, h=360):
    """Letterbox ``img`` into ``w x h`` (black bars), keeping its aspect."""
    import cv2

    s = min(w / img.shape[1], h / img.shape[0])
    r = cv2.resize(img, (int(img.shape[1] * s), int(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
    out = np.zeros((h, w, 3), np.uint8)
    y, x = (h - r.shape[0]) // 2, (w - r.shape[1]) // 2
    out[y:y + r.shape[0], x:x + r.shape[1]] = r
    return out


def _write(path, frames, fps=25):
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        s.bit_rate = 6_000_000
        for img in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def build(work: Path) -> dict:
    import cv2

    work.mkdir(parents=True, exist_ok=True)
    clips = {"side_by_side": ANIME, "anime_crop": (ANIME, "768,0,768,768"), "kunkun": KUNKUN, "skater": SKATER}
    right = (768, 0, 768, 768)
    if not (work / "closeup_open.mp4").exists():
        close = [cv2.resize(f[40:424, 192:576], (640, 640)) for f in _frames(ANIME, 25, crop=right)]
        full = [cv2.resize(f, (640, 640)) for f in _frames(ANIME, 75, crop=right, start=60)]
        _write(work / "closeup_open.mp4", close + full)
    if not (work / "spliced.mp4").exists():
        _write(work / "spliced.mp4", [_fit(f) for f in _frames(KUNKUN, 50) + _frames(SKATER, 50)
                                      + _frames(ANIME, 50, crop=right, start=100)])
    if not (work / "zoom.mp4").exists():
        src = _frames(KUNKUN, 100)
        out = []
        for i, f in enumerate(src):
            z = 1.0 + 0.8 * i / (len(src) - 1)
            h, w = f.shape[:2]
            ch, cw = int(h / z), int(w / z)
            y0, x0 = (h - ch) // 3, (w - cw) // 2
            out.append(cv2.resize(f[y0:y0 + ch, x0:x0 + cw], (640, 360)))
        _write(work / "zoom.mp4", out)
    if not (work / "recut.mp4").exists():
        src = _frames(KUNKUN, 100)
        out = []
        for i, f in enumerate(src):
            if i >= 50:
                h, w = f.shape[:2]
                ch, cw = int(h / 1.6), int(w / 1.6)
                y0, x0 = (h - ch) // 4, (w - cw) // 2
                f = f[y0:y0 + ch, x0:x0 + cw]
            out.append(cv2.resize(f, (640, 360)))
        _write(work / "recut.mp4", out)
    if not (work / "dropout.mp4").exists():
        src = [cv2.resize(f, (512, 512)) for f in _frames(ANIME, 100, crop=right)]
        rng = np.random.default_rng(0)
        drop = rng.random(len(src)) < 0.4
        _write(work / "dropout.mp4", [np.zeros_like(f) if d else f for f, d in zip(src, drop)])
    for n in ("closeup_open", "spliced", "zoom", "recut", "dropout"):
        clips[n] = work / f"{n}.mp4"
    return clips


def _cut_steps(vmd_path: Path, poses) -> str:
    """The centre's (センター + グルーブ) largest step within a key of each shot cut of the written motion, in cm,
    against its median step: a dancer who jumps at a cut shows here. Empty without cuts."""
    from core.formats import vmd
    from core.motion import BoneMotion

    shots = getattr(poses, "shots", None)
    if shots is None or len(shots) < 2:
        return ""
    m = BoneMotion.from_vmd(vmd.read(vmd_path))
    c = m.locations["センター"] + m.locations.get("グルーブ", 0.0)
    step = np.linalg.norm(np.diff(c, axis=0), axis=1) * 8.0           # MMD units -> cm (core.conventions)
    t0 = poses.timestamps[0]
    at = [int(round((poses.timestamps[a] - t0) * 30.0)) for a, _ in shots[1:]]
    cut = [float(step[max(k - 2, 0):k + 1].max()) for k in at if 0 < k <= len(step)]
    import re

    turns = [t for n in poses.notes for t in re.findall(r"turned ([+-]?\d+)°", n)]
    return (f", centre step at the cuts {'/'.join(f'{v:.1f}' for v in cut)} cm (median {np.median(step):.1f})"
            + (f", shots turned {'/'.join(turns)}°" if turns else ""))


def run(repo: Path, name: str, clip, work: Path) -> str:
    from core import quality

    path, crop = clip if isinstance(clip, tuple) else (clip, None)
    out = work / "out" / f"{name}.vmd"
    out.parent.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "core", "estimate", str(path), "-o", str(out), "--overwrite", "-q"]
    if crop:
        cmd += ["--crop", crop]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=1800, env=env)
    figures = ""
    npz = out.with_suffix(".npz")
    if r.returncode == 0 and npz.exists():
        from core import motion_stage, pose_io
        from core.motion_cleanup import clean_motion

        p = pose_io.load(npz)
        q = quality.QualityReport.from_json(p.quality) if getattr(p, "quality", "") else None
        if q is not None and q.centre_speed_p99 is not None:
            mf = {"centre_speed_p99": q.centre_speed_p99, "rotation_pops": q.rotation_pops}
        else:  # an older checkout: the same figures from its pose file through this checkout's motion stage
            rest, _ = motion_stage.load_rest(None)
            mf = quality.motion_figures(clean_motion(p, rest)[0])
        use = f"{100 * q.usable_fraction:5.1f}%" if q else f"{100 * p.detected.mean():5.1f}%*"
        extra = (f" detected {100 * q.detected / q.frames:5.1f}% rejected {100 * q.rejected / q.frames:4.1f}% "
                 f"shots {q.shots} legs-out {q.upper_body}") if q else " (no quality report: detected frames)"
        figures = (f"usable {use}{extra} | centre p99 {mf['centre_speed_p99']:.2f} m/s, pops {mf['rotation_pops']}"
                   + _cut_steps(out, p))
    else:
        err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        figures = "REFUSED: " + (err[0][:160] if err else r.stderr.strip()[-160:])
    npz.unlink(missing_ok=True)
    return f"{name:>14}  rc={r.returncode}  {figures}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=None)
    ap.add_argument("--repo", default=str(REPO))
    ap.add_argument("--only", default="")
    a = ap.parse_args(argv)
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="hard-input-"))
    clips = build(work)
    only = [n for n in a.only.split(",") if n]
    for name, clip in clips.items():
        if only and name not in only:
            continue
        print(run(Path(a.repo), name, clip, work), flush=True)


if __name__ == "__main__":
    main()
