"""The floor: a plane fitted robustly to the feet in contact, per shot, and the correction that puts the feet on it.

Not a single percentile shift for the whole clip: per shot (a list of frame ranges; the whole clip by default)

1. a provisional floor is the horizontal plane through a low percentile of the lowest foot point's height -- the
   idea MMD Auto Trace v4 uses to place its floor, from the height distribution of the feet -- or, where they
   spread enough, a plane fitted (as in step 3) to the lowest foot point of the lower 60% of frames;
2. contacts are detected against it (``core.contact``);
3. a plane is fitted to the contact points by RANSAC (Fischler & Bolles, CACM 1981) and refined by iteratively
   reweighted least squares (Tukey biweight weights on the point-to-plane distances, a weighted total least-squares
   plane in each round; a round that would tilt the plane past the limit puts it on the limit, nearest to that
   plane, so the result does not depend on RANSAC's draws); with too few or too clustered points, or no hypothesis
   within the limit, the plane stays horizontal at the contact points' median height;
4. contacts are detected again against the fitted plane, and the plane refitted once.

:func:`ground` then levels each shot so its plane becomes ``height = 0`` along ``up`` and moves the whole body
vertically, per frame, so that the lowest foot point in contact touches the floor (within 1 cm: the shift is
smoothed so the feet's noise does not shake the body, but kept that close on contact frames); between contacts the
shift is interpolated in time and a lower foot within a few cm of the floor is settled on it (a higher one is a
jump, and keeps its height); and no foot point is ever below the floor (where a free point
is lower than the planted one, the body is raised and the planted point floats by that much: ``core.foot_lock``
then pins it on the floor per leg). Frames and units:
``core.conventions`` (the pipeline uses the levelled camera frame, metres, up = -y).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import contact as C
from . import quat

__all__ = ["FloorPlane", "fit_plane", "GroundResult", "ground", "lowest_foot_height", "CAMERA_UP"]

#: "Up" in the levelled camera frame (y points down, ``core.conventions``).
CAMERA_UP = np.array([0.0, -1.0, 0.0])


@dataclass(frozen=True)
class FloorPlane:
    """A floor plane: ``height(p) = normal · p + offset`` (metres above the floor along ``normal``).

    Attributes:
        normal: ``(3,)`` unit normal pointing up.  offset: metres.
        inliers: contact points that support the plane.  method: ``"ransac"``, ``"horizontal"`` or ``"percentile"``.
    """

    normal: np.ndarray
    offset: float
    inliers: int = 0
    method: str = "ransac"

    def height(self, points) -> np.ndarray:
        """Height above the plane of ``(..., 3)`` points: ``(...)`` metres."""
        return np.asarray(points, dtype=np.float64) @ self.normal + self.offset

    def tilt_deg(self, up) -> float:
        """Angle between the plane's normal and ``up``, degrees."""
        u = np.asarray(up, dtype=np.float64)
        return float(np.degrees(np.arccos(np.clip(self.normal @ (u / np.linalg.norm(u)), -1, 1))))


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    n = np.linalg.norm(v)
    if not n > 0:
        raise ValueError("up must be a non-zero vector")
    return v / n


def _horizontal(points: np.ndarray, up: np.ndarray, method: str) -> FloorPlane:
    h = points @ up
    return FloorPlane(up.copy(), -float(np.median(h)), int(points.shape[0]), method)


def fit_plane(points, up=CAMERA_UP, *, tol: float = 0.025, iterations: int = 300, max_tilt_deg: float = 25.0,
              min_spread: float = 0.15, seed: int = 0) -> FloorPlane:
    """Robust floor plane through ``(N, 3)`` contact points (metres); see the module docstring, step 3.

    Args:
        points: ``(N, 3)``, NaN rows ignored.  up: the expected up direction.
        tol: RANSAC inlier distance, metres.  max_tilt_deg: planes tilted more than this from ``up`` are rejected.
        min_spread: metres; if the points' second horizontal extent (2 standard deviations) is below it, the tilt is
            not observable and a horizontal plane is returned (``method="horizontal"``).
        seed: RANSAC's random seed (deterministic results).
    Returns:
        :class:`FloorPlane` (normal pointing along ``up``).
    Raises:
        ValueError: fewer than 3 finite points.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"fit_plane expects (N, 3) points, got {p.shape}")
    p = p[np.isfinite(p).all(axis=1)]
    up = _unit(up)
    if p.shape[0] < 3:
        raise ValueError(f"fit_plane needs at least 3 points, got {p.shape[0]}")
    # Horizontal spread: is the tilt observable?
    q = p - p.mean(axis=0)
    q_h = q - np.outer(q @ up, up)
    sv = np.linalg.svd(q_h, compute_uv=False) / np.sqrt(max(p.shape[0] - 1, 1))
    if p.shape[0] < 12 or 2.0 * sv[1] < min_spread:
        return _horizontal(p, up, "horizontal")
    rng = np.random.default_rng(seed)
    cos_max, sin_max = np.cos(np.radians(max_tilt_deg)), np.sin(np.radians(max_tilt_deg))
    # every hypothesis at once: ``iterations`` triples of distinct points, drawn as a sequential RANSAC draws them
    tri = np.array([rng.choice(p.shape[0], 3, replace=False) for _ in range(iterations)])
    a, b, c = p[tri[:, 0]], p[tri[:, 1]], p[tri[:, 2]]
    n = np.cross(b - a, c - a)
    nn = np.linalg.norm(n, axis=1)
    n = n / np.where(nn < 1e-9, 1.0, nn)[:, None]
    n *= np.where(n @ up < 0, -1.0, 1.0)[:, None]
    valid = (nn >= 1e-9) & (n @ up >= cos_max)
    if not valid.any():
        return _horizontal(p, up, "horizontal")
    d_all = -np.sum(a * n, axis=1)
    count = np.zeros(iterations, dtype=np.int64)
    for s0 in range(0, iterations, 64):           # inlier counts in blocks: (64, N) distances at a time
        s1 = min(s0 + 64, iterations)
        count[s0:s1] = np.sum(np.abs(n[s0:s1] @ p.T + d_all[s0:s1, None]) < tol, axis=1)
    count[~valid] = -1
    k = int(np.argmax(count))                     # the first of the best, as a sequential RANSAC keeps it
    if count[k] < 6:
        return _horizontal(p, up, "horizontal")
    n, d = n[k], float(d_all[k])
    for _ in range(10):  # IRLS with Tukey biweight, scale from the MAD
        r = p @ n + d
        s = max(1.4826 * np.median(np.abs(r - np.median(r))), 0.005)
        u = r / (4.685 * s)
        w = np.where(np.abs(u) < 1, (1 - u ** 2) ** 2, 0.0)
        if w.sum() < 3:
            break
        m = (w[:, None] * p).sum(0) / w.sum()
        cov = ((p - m) * w[:, None]).T @ (p - m)
        n_new = np.linalg.eigh(cov)[1][:, 0]
        if n_new @ up < 0:
            n_new = -n_new
        if n_new @ up < cos_max:    # past the tilt limit: the plane on the limit nearest to it
            side = n_new - (n_new @ up) * up
            sn = np.linalg.norm(side)
            if not sn > 1e-12:
                break
            n_new = cos_max * up + sin_max * side / sn
        n, d = n_new, -float(m @ n_new)
    inl = int(np.sum(np.abs(p @ n + d) < tol))
    return FloorPlane(n, d, inl, "ransac")


def lowest_foot_height(joints, plane: FloorPlane) -> np.ndarray:
    """Height of the lowest of the four foot points (``core.contact.foot_points``) above ``plane``: ``(T,)`` m."""
    return np.nanmin(plane.height(C.foot_points(joints)), axis=1)


@dataclass
class GroundResult:
    """What :func:`ground` returns.

    Attributes:
        joints: ``(T, 27, 3)`` corrected joints (each shot levelled: floor at height 0 along ``up``).
        contacts: ``(T, 4)`` bool (order ``core.contact.CONTACT_POINTS``).
        scores: ``(T, 4)`` contact scores.
        planes: one :class:`FloorPlane` per shot, in the input frame (before levelling).
        shift: ``(T,)`` metres added along ``up`` per frame after levelling.
        notes: lines for the run report.
    """

    joints: np.ndarray
    contacts: np.ndarray
    scores: np.ndarray
    planes: list
    shift: np.ndarray
    notes: list = field(default_factory=list)


def _shots(shots, T):
    if shots is None:
        return [(0, T)]
    out = []
    for a, b in shots:
        a, b = int(a), int(b)
        if not 0 <= a < b <= T:
            raise ValueError(f"ground: shot ({a}, {b}) is not a frame range within 0..{T}")
        out.append((a, b))
    return out


def ground(joints, t, *, shots=None, up=CAMERA_UP, keypoints_2d=None, probs=None,
           params: C.ContactParams = C.ContactParams(), percentile: float = 5.0,
           snap: tuple[float, float] = (0.05, 0.12), smooth_hz: float = 2.0,
           contact_tol: float = 0.01, max_tilt_deg: float = 25.0) -> GroundResult:
    """Detect contacts, fit a floor per shot, level it and put the feet on it (see the module docstring).

    Args:
        joints: ``(T, 27, 3)`` absolute ``CANONICAL`` joints (root trajectory included), metres, in a frame whose
            ``up`` is roughly known (levelled camera frame: up = -y).
        t: ``(T,)`` seconds.
        shots: list of ``(start, stop)`` frame ranges (stop exclusive) or None for the whole clip.
        keypoints_2d: ``(T, 27, 3)`` ``CANONICAL`` px + confidence (2D speed cue) or None.
        probs: ``(T, 4)`` lifter contact probabilities or None.
        percentile: of the lowest foot point's height, for the provisional floor.
        snap: metres; between contacts the lowest foot point is settled on the floor when it is below ``snap[0]``
            above it, progressively less up to ``snap[1]`` (a dancer who is not jumping stands on a foot).
        smooth_hz: cutoff (Hz) of the zero-phase low-pass on the per-frame vertical shift (0 = exact per frame):
            the shift otherwise adds the feet's noise to every joint. On contact frames the smoothed shift stays
            within ``contact_tol`` metres of the exact one, so planted feet touch the floor within 1 cm.
        max_tilt_deg: planes tilted more than this from ``up`` are not trusted (the floor stays level): 25° when
            ``up`` comes from the torso, less when a better estimate of the world's up levelled the joints.
    Returns:
        :class:`GroundResult`.
    Raises:
        ValueError: bad shapes or shots.
    """
    j = np.asarray(joints, dtype=np.float64)
    if j.ndim != 3 or j.shape[1:] != (27, 3):
        raise ValueError(f"ground expects (T, 27, 3) joints, got {j.shape}")
    t = np.asarray(t, dtype=np.float64)
    T = j.shape[0]
    up = _unit(up)
    out = j.copy()
    contacts = np.zeros((T, 4), dtype=bool)
    scores = np.zeros((T, 4))
    shift = np.zeros(T)
    planes, notes = [], []
    p2 = body = None
    if keypoints_2d is not None:
        kp = np.asarray(keypoints_2d, dtype=np.float64)
        p2 = C.foot_points(kp[..., :2])
        body = C.body_size_2d(kp)
    for si, (a, b) in enumerate(_shots(shots, T)):
        js = j[a:b]
        fp = C.foot_points(js)
        ts = t[a:b]
        h0 = fp @ up
        low = np.nanmin(h0, axis=1)
        plane = FloorPlane(up.copy(), -float(np.nanpercentile(low, percentile)), 0, "percentile")
        # A first tilted plane through each frame's lowest foot point (near the floor on most frames), so a camera
        # tilt the torso-based levelling missed does not hide the contacts.
        lowest = fp[np.arange(len(fp)), np.nanargmin(np.where(np.isfinite(h0), h0, np.inf), axis=1)]
        lowest = lowest[low <= np.nanpercentile(low, 60)]
        if lowest.shape[0] >= 12:
            first = fit_plane(lowest, up, tol=0.04, max_tilt_deg=max_tilt_deg)
            if first.method == "ransac":
                plane = first
        con = sc = None
        for _ in range(2):
            con, sc = C.detect_contacts(fp, ts, plane.height(fp),
                                        points_2d=None if p2 is None else p2[a:b],
                                        body_px=None if body is None else body[a:b],
                                        probs=None if probs is None else np.asarray(probs)[a:b], params=params)
            pts = fp[con]
            if pts.shape[0] >= 3:
                plane = fit_plane(pts, up, max_tilt_deg=max_tilt_deg)
        planes.append(plane)
        # Level: rotate about the first contact point (or the mean foot point) so the normal becomes up.
        R = quat.to_matrix(quat.from_two_vectors(plane.normal, up))
        piv = np.nanmean(fp[con], axis=0) if con.any() else np.nanmean(fp.reshape(-1, 3), axis=0)
        lev = (js - piv) @ R.T + piv
        off = plane.height(piv) - piv @ up                      # height(p) = up·p' + off after levelling
        h = C.foot_points(lev) @ up + off                       # (n, 4)
        # per-frame shift: contact frames pin the lowest contact point, others interpolate; never below.
        hc = np.where(con, h, np.inf).min(axis=1)
        has = np.isfinite(hc)
        n = b - a
        if has.any():
            dz = np.interp(ts, ts[has], -hc[has])
        else:
            dz = np.zeros(n)
        # between contacts, a lower foot just above the floor is standing on it (not jumping): settle it there,
        # fully at <= snap[0] m, not at all from snap[1] m (so a jump keeps its height)
        hl = np.nanmin(h, axis=1) + dz
        w = np.clip((snap[1] - hl) / (snap[1] - snap[0]), 0.0, 1.0)
        dz = np.where(has, dz, dz - hl * w)
        if smooth_hz and n >= 3:
            # the per-frame shift carries the feet's noise into the whole body: smooth it (zero phase); planted feet
            # are pinned exactly on the model by core.foot_lock afterwards
            from .smoothing import one_euro

            exact = dz
            dz = one_euro(dz[:, None], ts, min_cutoff=smooth_hz, beta=0.0)[:, 0]
            dz = np.where(has, np.clip(dz, exact - contact_tol, exact + contact_tol), dz)   # planted: within 1 cm
        dz = np.maximum(dz, -np.nanmin(h, axis=1))            # no foot point below the floor, ever
        out[a:b] = lev + (off + dz)[:, None, None] * up          # now up·p is the height above the floor
        shift[a:b] = dz
        contacts[a:b], scores[a:b] = con, sc
        notes.append(f"floor (shot {si + 1}, frames {a}-{b - 1}): {plane.method} plane from {int(con.sum())} contact "
                     f"points, tilt {plane.tilt_deg(up):.1f}°, {100 * con.any(axis=1).mean():.0f}% of frames in "
                     f"contact")
    return GroundResult(out, contacts, scores, planes, shift, notes)
