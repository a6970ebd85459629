"""The run's quality report (numpy + stdlib only): how much of the video the motion really comes from.

:func:`assess` sums up detection and gating (``core.gating``) for one pose sequence: frames detected, rejected by
the plausibility gate, usable, the longest run of frames without a usable skeleton, left/right swaps the cleanup
repairs (``core.smoothing.repair_swaps`` on the 2D keypoints, as ``core.motion_cleanup`` runs it), shot cuts
(``core.shots``) and frames where only the upper body is seen. The CLI prints :meth:`QualityReport.lines`, the pose
``.npz`` stores :meth:`QualityReport.to_json` (key :data:`NPZ_KEY`), and the add-on shows the same lines.

:meth:`QualityReport.check` is the loud failure: under ``min_usable`` of the frames usable, the run stops with a
:class:`core.errors.PipelineError` (code ``"no_detection"``) whose message gives the figures and what to try (a
crop, ``--start``/``--end``), unless forced.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import PipelineError

__all__ = ["QualityReport", "assess", "longest_run", "motion_figures", "NPZ_KEY", "DEFAULT_MIN_USABLE",
           "MAX_CENTRE_SPEED", "MAX_CENTRE_SPEED_FOLLOWED", "FOLLOWING_PAN_DEG", "MAX_POPS_PER_MIN",
           "MIN_POPS_REFUSED"]

#: Key of the report (a JSON string) in the pose ``.npz`` (``core.pose_io``).
NPZ_KEY = "quality"

#: Fraction of usable frames under which a run refuses to write a motion (unless forced).
DEFAULT_MIN_USABLE = 0.7
#: m/s: a centre (センター + グルーブ) faster than this at the 99th percentile is not a dancer (issue 10's target).
MAX_CENTRE_SPEED = 4.0

#: The same limit where the camera follows the performer (a pan of more than :data:`FOLLOWING_PAN_DEG` measured on
#: the background and undone): a skater or a runner filmed that way really moves this fast; a detection error still
#: flies faster.
MAX_CENTRE_SPEED_FOLLOWED = 10.0
FOLLOWING_PAN_DEG = 90.0
#: Rotation pops (a bone turning more than 45° between two keys) per minute above which a motion is refused.
MAX_POPS_PER_MIN = 30.0
#: A motion with fewer pops than this is never refused for them, however short: one or two single-frame turns in a
#: 2 s clip (31 a minute on a real anime render) are a glitch the report shows, not a sign the detections are wrong.
MIN_POPS_REFUSED = 3


def longest_run(mask) -> tuple[int, int]:
    """Longest run of True in a ``(T,)`` bool mask: ``(length, start)`` (``(0, -1)`` when none)."""
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return 0, -1
    d = np.diff(np.concatenate(([0], m.astype(np.int8), [0])))
    starts, stops = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    k = int(np.argmax(stops - starts))
    return int(stops[k] - starts[k]), int(starts[k])


@dataclass
class QualityReport:
    """Figures of one run (fractions in [0, 1], times in seconds from the first frame of the window).

    Attributes:
        frames: frames in the window.  detected: frames where the backend returned a skeleton.
        rejected: detected frames the gate refused (``core.gating``), by reason in ``rejected_by``.
        usable: detected and not rejected.  longest_gap: frames in the longest run without a usable skeleton,
        starting at ``longest_gap_start_s``.  swaps: left/right swap runs repaired.  shots: shot count
        (``cut_times_s`` where a new shot starts).  upper_body: usable frames where the legs are not seen;
        feet_unseen: usable frames where neither ankle is.  crop: the crop analysed (x, y, w, h) or None;
        ``crop_note`` how it was chosen.  fps: frame rate.  centre_speed_p99 (m/s), rotation_pops,
        motion_minutes: the written motion's figures (:func:`motion_figures`; None before the motion stage).
    """

    frames: int
    detected: int
    rejected: int
    usable: int
    longest_gap: int
    longest_gap_start_s: float
    swaps: int = 0
    shots: int = 1
    cut_times_s: list = field(default_factory=list)
    upper_body: int = 0
    feet_unseen: int = 0
    rejected_by: dict = field(default_factory=dict)
    crop: list | None = None
    crop_note: str = ""
    fps: float = 0.0
    centre_speed_p99: float | None = None
    rotation_pops: int | None = None
    motion_minutes: float | None = None

    @property
    def usable_fraction(self) -> float:
        return self.usable / self.frames if self.frames else 0.0

    def lines(self) -> list[str]:
        """The report for a user, one item per line."""
        n = max(self.frames, 1)
        pct = lambda k: f"{100.0 * k / n:.1f}%"  # noqa: E731
        why = ", ".join(f"{k} {v}" for k, v in sorted(self.rejected_by.items())) if self.rejected_by else ""
        gap_s = self.longest_gap / self.fps if self.fps > 0 else float("nan")
        out = [
            f"quality: {pct(self.usable)} of {self.frames} frames usable "
            f"(detected {pct(self.detected)}, rejected by the plausibility gate {pct(self.rejected)}"
            + (f": {why}" if why else "") + ")",
            f"quality: longest gap without a usable skeleton {self.longest_gap} frames"
            + (f" ({gap_s:.2f} s from {self.longest_gap_start_s:.2f} s)" if self.longest_gap else ""),
            f"quality: left/right swaps repaired {self.swaps}; shots {self.shots}"
            + (" (cuts at " + ", ".join(f"{c:.2f} s" for c in self.cut_times_s[:8])
               + (" ..." if len(self.cut_times_s) > 8 else "") + ")" if self.cut_times_s else ""),
        ]
        if self.upper_body:
            out.append(f"quality: legs out of frame in {self.upper_body} frames ({pct(self.upper_body)}): only the "
                       "upper body is taken from those frames (legs interpolated or held from the frames that show "
                       "them, standing straight in a shot that never does)")
        if self.feet_unseen > self.upper_body:
            out.append(f"quality: feet not seen in {self.feet_unseen} frames ({pct(self.feet_unseen)}): there they "
                       "are interpolated from the frames that show them, or the detector's guess where a shot "
                       "rarely does")
        if self.crop_note:
            out.append(f"quality: {self.crop_note}")
        if self.centre_speed_p99 is not None:
            out.append(f"quality: motion: centre speed {self.centre_speed_p99:.2f} m/s at the 99th percentile, "
                       f"{self.rotation_pops} rotation pops (a bone turning over 45° in one frame)")
        return out

    def check_motion(self, force: bool = False, *, max_centre_speed: float = MAX_CENTRE_SPEED,
                     max_pops_per_min: float = MAX_POPS_PER_MIN, source: str = "") -> None:
        """Refuse a motion no dancer makes: the centre faster than ``max_centre_speed`` m/s at the 99th percentile,
        or more than ``max_pops_per_min`` rotation pops per minute and at least :data:`MIN_POPS_REFUSED` of them
        (figures from :func:`motion_figures`).

        Raises:
            PipelineError("no_detection"): an implausible motion and not ``force``; the message gives the report
            and what to try.
        """
        if force or self.centre_speed_p99 is None:
            return
        why = []
        if self.centre_speed_p99 > max_centre_speed:
            why.append(f"its centre moves {self.centre_speed_p99:.1f} m/s at the 99th percentile (a dancer stays "
                       f"under {max_centre_speed:g})")
        per_min = (self.rotation_pops or 0) / max(self.motion_minutes or 0.0, 1e-9)
        if (self.rotation_pops or 0) >= MIN_POPS_REFUSED and per_min > max_pops_per_min:
            why.append(f"{self.rotation_pops} bone turns over 45° in one frame ({per_min:.0f} per minute)")
        if not why:
            return
        hints = (["--crop X,Y,W,H around the dancer"] if self.crop is None else []) + [
            "--start/--end around the part where the dancer is fully visible", "--force to write it anyway"]
        raise PipelineError(
            "no_detection",
            f"{source + ': ' if source else ''}the motion is not plausible: " + "; ".join(why)
            + " -- the detections are probably wrong.\n  " + "\n  ".join(self.lines()) + "\n  try: "
            + "; or ".join(hints))

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "QualityReport":
        """Read :meth:`to_json` output (unknown keys are ignored, so older readers accept newer files).

        Raises:
            ValueError: not a JSON object.
        """
        d = json.loads(text)
        if not isinstance(d, dict):
            raise ValueError("quality report: not a JSON object")
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})

    def check(self, min_usable: float = DEFAULT_MIN_USABLE, force: bool = False, *, source: str = "") -> None:
        """Refuse a run with too few usable frames (the loud failure of the module docstring).

        Raises:
            PipelineError("no_detection"): ``usable_fraction < min_usable`` and not ``force``; the message holds
            the report and what to try.
        """
        if force or self.usable_fraction >= min_usable:
            return
        hints = []
        if self.crop is None:
            hints.append("--crop X,Y,W,H around the dancer (e.g. the animated half of a side-by-side video)")
        if self.longest_gap:
            a = self.longest_gap_start_s
            b = a + (self.longest_gap / self.fps if self.fps > 0 else 0.0)
            hints.append(f"--start/--end to skip the part without a usable skeleton ({a:.2f}-{b:.2f} s)")
        if self.upper_body:
            hints.append("a clip that shows the legs")
        hints.append("--force to write the motion anyway")
        raise PipelineError(
            "no_detection",
            f"{source + ': ' if source else ''}only {100 * self.usable_fraction:.0f}% of the frames hold a usable "
            f"skeleton (at least {100 * min_usable:.0f}% are needed for a trustworthy motion).\n  "
            + "\n  ".join(self.lines()) + "\n  try: " + "; or ".join(hints))


def assess(*, detected, usable, timestamps, fps: float, keypoints_canonical=None, shots=None, upper_body=None,
           rejected_by=None, crop=None, crop_note: str = "") -> QualityReport:
    """Build the report of one pose sequence.

    Args:
        detected: ``(T,)`` bool, the backend returned a skeleton; usable: ``(T,)`` bool, it also passed the gate.
        timestamps: ``(T,)`` seconds; fps: frame rate (for gap durations).
        keypoints_canonical: optional ``(T, 27, 3)`` ``CANONICAL`` px + confidence, to count the left/right swaps
            ``core.smoothing.repair_swaps`` repairs (the cleanup's own call); None = not counted (0).
        shots: ``[(start, stop), ...]`` or None; upper_body: ``(T,)`` bool or None; rejected_by: reason -> frames.
        crop, crop_note: the crop analysed and how it was chosen.
    Returns:
        :class:`QualityReport`.
    """
    det = np.asarray(detected, dtype=bool)
    use = np.asarray(usable, dtype=bool)
    t = np.asarray(timestamps, dtype=np.float64)
    T = len(det)
    gap, start = longest_run(~use)
    swaps = feet = 0
    if keypoints_canonical is not None:
        from .skeletons import CANONICAL

        c = np.nan_to_num(np.asarray(keypoints_canonical, dtype=np.float64)[..., 2])
        feet = int((use & (c[:, CANONICAL.index("LFoot")] <= 0) & (c[:, CANONICAL.index("RFoot")] <= 0)).sum())
    if keypoints_canonical is not None and use.sum() >= 3:
        from . import smoothing

        k = np.asarray(keypoints_canonical, dtype=np.float64)[use]
        _, rep = smoothing.repair_swaps(k[..., :2], confidence=np.nan_to_num(k[..., 2]))
        swaps = int(rep.count)
    shots = [(0, T)] if shots is None else [tuple(int(v) for v in s) for s in shots]
    cuts = [float(t[a] - t[0]) for a, _ in shots[1:]] if T else []
    return QualityReport(
        frames=T, detected=int(det.sum()), rejected=int((det & ~use).sum()), usable=int(use.sum()),
        longest_gap=gap, longest_gap_start_s=float(t[start] - t[0]) if gap else 0.0, swaps=swaps,
        shots=len(shots), cut_times_s=cuts, upper_body=int(np.asarray(upper_body, dtype=bool).sum())
        if upper_body is not None else 0, feet_unseen=feet, rejected_by=dict(rejected_by or {}),
        crop=list(crop) if crop is not None else None, crop_note=crop_note, fps=float(fps))


def motion_figures(motion) -> dict:
    """Plausibility figures of a :class:`core.motion.BoneMotion` (dense keys, MMD units at 30 fps).

    Returns:
        ``{"centre_speed_p99": m/s, "rotation_pops": int, "motion_minutes": float}``: the 99th percentile of the
        speed of センター + グルーブ's translation (their sum: グルーブ hangs from センター and neither is rotated by
        the retargeting, docs/MMD_FACTS.md §5.7), and the steps above 45° between consecutive keys of every bone's
        rotation (``core.smoothing.rotation_pops``).
    """
    from . import smoothing
    from .conventions import METRES_PER_UNIT, MMD_FPS

    frames = np.asarray(motion.frames, dtype=np.float64)
    T = len(frames)
    root = np.zeros((T, 3))
    for name in ("センター", "グルーブ"):
        if name in motion.locations:
            root = root + np.asarray(motion.locations[name], dtype=np.float64)
    if T >= 2:
        dt = np.diff(frames) / MMD_FPS
        speed = np.linalg.norm(np.diff(root, axis=0), axis=1) * METRES_PER_UNIT / dt
        p99 = float(np.percentile(speed, 99))
    else:
        p99 = 0.0
    pops = int(sum(smoothing.rotation_pops(q) for q in motion.rotations.values()))
    minutes = float((frames[-1] - frames[0]) / MMD_FPS / 60.0) if T >= 2 else 0.0
    return {"centre_speed_p99": p99, "rotation_pops": pops, "motion_minutes": minutes}
