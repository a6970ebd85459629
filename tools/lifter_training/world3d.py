"""MediaPipe's 3D world landmarks as a second lifter input: their measured error model and its simulation.

MediaPipe BlazePose gives, next to its 2D keypoints, a root-relative 3D pose ("world landmarks"; the pose file's
``joints_3d`` of ``--lifter native``, ``camera`` axes, metres, ``core.conventions``). It is a learned estimate of its
own, with errors unlike those of a 2D lifter (it sees the image: shading, occlusion, the face), so the trained lifter
takes it as an extra input (docs/lifter.md §1, §3). To train on motion capture, that input is simulated from the
ground truth with the error statistics measured here on headless renders of the shared models (the same cases as
the 2D noise: ``tools/measure_detector_noise.py``).

Error model (per frame ``t``, per joint ``j``; ``g`` = true root-relative camera-frame joints, metres):

    m_tj = s_t · R_t · (g_tj + o_j(t) + r_tj)

* ``s_t``: scale (MediaPipe's own idea of the body's size against the model's): ``log s`` = a per-clip value
  (measured mean and between-clip spread) plus within-clip AR(1) variation;
* ``R_t``: a global rotation error, rotation vector = per-clip offset (measured mean and spread per camera axis)
  plus within-clip AR(1) variation (measured spread and lag-1 autocorrelation);
* ``o_j``: a systematic per-joint offset, constant in the body frame [left, up, forward] (leg lengths);
* ``r_tj``: per-axis (camera x, y, z) residual, leg lengths: a Gaussian core (robust sigma) with the measured lag-1
  autocorrelation, and heavy-tailed outliers at the measured rate and size.

``s_t`` and ``R_t`` are the per-frame similarity (Umeyama 1991, as ``benchmarks/closed_loop/metrics.procrustes``)
that best maps ``g`` onto ``m``; ``o`` and ``r`` are what is left, mapped back. Left and right joints share their
pair's figures (the offset's left component mirrored), as for the 2D noise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core import quat as Q
from core.skeletons import CANONICAL, CANONICAL_MIRROR

from .synth import ar1

__all__ = ["measure", "World3DNoise", "simulate", "SCHEMA"]

J = {n: i for i, n in enumerate(CANONICAL)}
NJ = len(CANONICAL)

SCHEMA = {
    "world_3d": "error of MediaPipe's world landmarks (pose file joints_3d, camera axes, metres, root-relative) "
                "against the true camera-frame joints, as m = s R (g + offset + residual) (tools/lifter_training/"
                "world3d.py docstring)",
    "world_3d.log_scale": "log s: mean, between-case std (of per-case means), within-case std, lag-1 autocorrelation",
    "world_3d.rotvec": "rotation vector of R (radians, camera x, y, z): mean and between-case robust std (1.4826 "
                       "MAD) of the per-case means, within-case robust std, lag-1 autocorrelation",
    "world_3d.joints.<name>.offset_body_leglen": "mean residual in the body frame [left, up, forward], leg lengths",
    "world_3d.joints.<name>.core_sigma_leglen": "robust sigma (1.4826 MAD) of the residual after the offset, per "
                                                "camera axis (x, y, z), leg lengths",
    "world_3d.joints.<name>.tail_fraction": "fraction of residuals beyond 3 core sigmas (norm of the scaled vector)",
    "world_3d.joints.<name>.tail_norm_median_leglen": "median norm of those residuals, leg lengths",
    "world_3d.residual_autocorrelation_lag1": "lag-1 autocorrelation of the residual, pooled over joints and axes",
    "world_3d.mpjpe_mm_raw": "mean joint error of the raw world landmarks, root-relative, mm (context)",
    "world_3d.calibration": "resid_scale: factor on the residual (core sigma and tails) with which the simulation, "
                            "run on the measured cases' true joints, gives their measured PA-MPJPE (mm, real and "
                            "simulated, before and after; and the simulated MPJPE, to compare with mpjpe_mm_raw)",
    "world_3d_by_model": "the same statistics per rendered model (mat4: textured, yw: faceless mannequin)",
}


def _leg_len(g):
    """(...,) leg length (hip -> knee -> ankle, mean of both legs) of (..., 27, 3) joints."""
    L = 0.0
    for s in "LR":
        L = L + np.linalg.norm(g[..., J[s + "Knee"], :] - g[..., J[s + "Hip"], :], axis=-1) \
              + np.linalg.norm(g[..., J[s + "Foot"], :] - g[..., J[s + "Knee"], :], axis=-1)
    return L / 2.0


def _body_frames(g, up):
    """(..., 3, 3) rows [left, up, forward] in camera axes from joints (..., 27, 3) and the world's unit up
    (3,) or (..., 3) (one per leading index of ``g`` but the last)."""
    left = g[..., J["LHip"], :] - g[..., J["RHip"], :]
    upb = np.broadcast_to(up, left.shape)
    left = left - np.sum(left * upb, axis=-1, keepdims=True) * upb
    left /= np.maximum(np.linalg.norm(left, axis=-1, keepdims=True), 1e-9)
    fwd = np.cross(upb, left)
    return np.stack([left, upb, fwd], axis=-2)


def _similarity(m, g):
    """Per frame s, R (T,), (T, 3, 3) minimising |m - s R g|² over joints (Umeyama 1991); inputs (T, N, 3)."""
    mc, gc = m - m.mean(1, keepdims=True), g - g.mean(1, keepdims=True)
    h = np.einsum("tni,tnj->tij", mc, gc)                      # sum m g^T
    u, sv, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(u @ vt))
    D = np.ones_like(sv)
    D[:, -1] = d
    R = u @ (D[..., None] * vt)
    s = (sv * D).sum(1) / np.maximum((gc ** 2).sum((1, 2)), 1e-12)
    return s, R


def _rotvec(R):
    """(T, 3) rotation vectors of (T, 3, 3) rotations (core.quat)."""
    axis, ang = Q.to_axis_angle(Q.from_matrix(R))
    return axis * ang[..., None]


def _from_rotvec(v):
    """(..., 3, 3) rotations from rotation vectors (..., 3) (core.quat)."""
    return Q.to_matrix(Q.from_axis_angle(v, np.linalg.norm(v, axis=-1)))


def _robust_std(x):
    """Per-column robust spread (1.4826 MAD) of (N, k) samples: a few front/back flips do not inflate it."""
    return 1.4826 * np.median(np.abs(x - np.median(x, axis=0)), axis=0)


def _lag1(x):
    """Lag-1 autocorrelation of per-case zero-mean series: list of (T, ...) arrays, pooled."""
    num = den = 0.0
    for a in x:
        a = a - a.mean(0, keepdims=True)
        num += float((a[1:] * a[:-1]).sum())
        den += float((a * a).sum())
    return num / max(den, 1e-12)


def measure(cases: list[dict]) -> dict:
    """The ``world_3d`` statistics (:data:`SCHEMA`) over rendered cases.

    Args:
        cases: dicts with ``gt`` (the render's ``gt.npz`` arrays: ``joints`` MMD units, ``R``, ``cam_position``),
            ``world`` (T, 27, 3) the pose file's ``joints_3d`` (metres, camera axes) and ``detected`` (T,) bool.
    """
    from core.conventions import METRES_PER_UNIT
    per = []
    for c in cases:
        gt = c["gt"]
        t = min(len(c["world"]), len(gt["joints"]))
        g = (gt["joints"][:t] - gt["cam_position"]) @ gt["R"].T * METRES_PER_UNIT
        g = g - g[:, :1]
        m = np.asarray(c["world"][:t], dtype=np.float64)
        m = m - m[:, :1]
        ok = np.asarray(c["detected"][:t], dtype=bool) & np.isfinite(m).all((1, 2))
        if ok.sum() < 5:
            continue
        g, m = g[ok], m[ok]
        s, R = _similarity(m, g)
        back = np.einsum("tji,tnj->tni", R, m) / s[:, None, None]      # R^T m / s
        leg = _leg_len(g)
        up = gt["R"] @ np.array([0.0, 1.0, 0.0])                        # MMD up (+Y) in camera axes
        up = up / np.linalg.norm(up)
        per.append({"g": g, "m": m, "s": s, "rv": _rotvec(R), "res": (back - g) / leg[:, None, None],
                    "body": _body_frames(g, up)})
    if not per:
        raise ValueError("world3d.measure: no case with enough detected frames")
    res = np.concatenate([p["res"] for p in per])                          # (N, 27, 3)
    body = np.concatenate([p["body"] for p in per])                        # (N, 3, 3)
    res_body = np.einsum("nij,nkj->nki", body, res)                        # body components
    off_body = res_body.mean(0)                                            # (27, 3)
    mir = np.array(CANONICAL_MIRROR)
    off_body = 0.5 * (off_body + off_body[mir] * np.array([-1.0, 1.0, 1.0]))
    resid = res - np.einsum("nij,ki->nkj", body, off_body)                 # offset (body frame) removed, camera axes
    med = np.median(resid, axis=0)
    sigma = 1.4826 * np.median(np.abs(resid - med), axis=0)                # (27, 3)
    sigma = 0.5 * (sigma + sigma[mir])
    z = np.linalg.norm(resid / np.maximum(sigma, 1e-9), axis=-1)
    tail = z > 3.0
    tail_f = tail.mean(0)
    tail_f = 0.5 * (tail_f + tail_f[mir])
    tnorm = np.linalg.norm(resid, axis=-1)
    tail_med = np.array([float(np.median(tnorm[tail[:, j], j])) if tail[:, j].any() else 0.0 for j in range(NJ)])
    tail_med = 0.5 * (tail_med + tail_med[mir])
    # residual autocorrelation per case
    k0 = 0
    rs = []
    for p in per:
        n = len(p["res"])
        rs.append(resid[k0:k0 + n])
        k0 += n
    rho = _lag1(rs)
    ls = [np.log(np.maximum(p["s"], 1e-6)) for p in per]
    rv = [p["rv"] for p in per]
    ls_case = np.array([a.mean() for a in ls])
    rv_case = np.array([a.mean(0) for a in rv])
    raw = np.concatenate([np.linalg.norm(p["m"] - p["g"], axis=-1).mean(1) for p in per])
    joints = {}
    for j, n in enumerate(CANONICAL):
        joints[n] = {"offset_body_leglen": [round(float(v), 5) for v in off_body[j]],
                     "core_sigma_leglen": [round(float(v), 5) for v in sigma[j]],
                     "tail_fraction": round(float(tail_f[j]), 4),
                     "tail_norm_median_leglen": round(float(tail_med[j]), 5)}
    out = {
        "cases": len(per), "frames": int(sum(len(p["s"]) for p in per)),
        "log_scale": {"mean": round(float(np.concatenate(ls).mean()), 5),
                      "between_std": round(float(ls_case.std()), 5),
                      "within_std": round(float(np.sqrt(np.mean(np.concatenate([a - a.mean() for a in ls]) ** 2))), 5),
                      "lag1": round(_lag1(ls), 4)},
        "rotvec": {"mean": [round(float(v), 5) for v in rv_case.mean(0)],
                   "between_std": [round(float(v), 5) for v in _robust_std(rv_case)],
                   "within_std": [round(float(v), 5) for v in _robust_std(np.concatenate([a - a.mean(0) for a in rv]))],
                   "lag1": round(_lag1(rv), 4)},
        "joints": joints,
        "residual_autocorrelation_lag1": round(rho, 4),
        "mpjpe_mm_raw": round(1000 * float(raw.mean()), 1),
    }
    out["calibration"] = _calibrate(out, per)
    return out


def _pa(m, g):
    """Per-frame Procrustes-aligned (with scale) mean joint error, (T, J, 3) -> (T,) (Umeyama 1991)."""
    s, R = _similarity(g, m)                                 # maps m onto g
    mc = m - m.mean(1, keepdims=True)
    al = s[:, None, None] * np.einsum("tij,tnj->tni", R, mc) + g.mean(1, keepdims=True)
    return np.linalg.norm(al - g, axis=-1).mean(1)


def _calibrate(stats: dict, per: list) -> dict:
    """The residual's size factor with which :func:`simulate`, run on the measured cases' true joints (fixed seed),
    gives the measured PA-MPJPE: independent per-joint residuals and tails, as simulated, are not quite the real
    errors (partly shared along a limb), so the raw statistics would make the input look noisier than it is."""
    noise = World3DNoise.from_dict({**stats, "calibration": {}})
    real = float(np.concatenate([_pa(p["m"], p["g"]) for p in per]).mean())

    def sim_pa(k):
        noise.resid_scale = k
        rng = np.random.default_rng(0)
        vals = []
        for p in per:
            up = p["body"][0, 1]
            sim = simulate(rng, p["g"][None], up[None], noise)[0]
            vals.append(_pa(sim, p["g"]))
        return float(np.concatenate(vals).mean())

    ks = np.round(np.arange(0.4, 1.31, 0.05), 2)
    got = [sim_pa(k) for k in ks]
    i = int(np.argmin(np.abs(np.array(got) - real)))
    noise.resid_scale = float(ks[i])
    rng = np.random.default_rng(1)
    mp = float(np.concatenate([np.linalg.norm(simulate(rng, p["g"][None], p["body"][0, 1][None], noise)[0] - p["g"],
                                              axis=-1).mean(1) for p in per]).mean())
    return {"resid_scale": float(ks[i]), "pa_mpjpe_mm_real": round(1000 * real, 1),
            "pa_mpjpe_mm_sim": round(1000 * got[i], 1), "pa_mpjpe_mm_sim_uncalibrated": round(1000 * got[ks.tolist().index(1.0)], 1),
            "mpjpe_mm_sim": round(1000 * mp, 1)}


@dataclass
class World3DNoise:
    """Arrays of the ``world_3d`` statistics (module docstring); ``scale`` multiplies every spread (augmentation)."""

    ls_mean: float
    ls_between: float
    ls_within: float
    ls_rho: float
    rv_mean: np.ndarray         # (3,)
    rv_between: np.ndarray      # (3,)
    rv_within: np.ndarray       # (3,)
    rv_rho: float
    offset_body: np.ndarray     # (27, 3) leg lengths
    sigma: np.ndarray           # (27, 3) leg lengths
    tail_fraction: np.ndarray   # (27,)
    tail_median: np.ndarray     # (27,)
    rho: float
    resid_scale: float = 1.0    # calibration of the residual's size (``calibration`` entry; see measure())
    scale: float = 1.0

    @classmethod
    def from_dict(cls, d: dict) -> "World3DNoise":
        jd = d["joints"]

        def arr(key):
            return np.array([jd[n][key] for n in CANONICAL], dtype=np.float64)

        return cls(ls_mean=d["log_scale"]["mean"], ls_between=d["log_scale"]["between_std"],
                   ls_within=d["log_scale"]["within_std"], ls_rho=float(np.clip(d["log_scale"]["lag1"], 0, 0.98)),
                   rv_mean=np.array(d["rotvec"]["mean"]), rv_between=np.array(d["rotvec"]["between_std"]),
                   rv_within=np.array(d["rotvec"]["within_std"]), rv_rho=float(np.clip(d["rotvec"]["lag1"], 0, 0.98)),
                   offset_body=arr("offset_body_leglen"), sigma=arr("core_sigma_leglen"),
                   tail_fraction=arr("tail_fraction"), tail_median=arr("tail_norm_median_leglen"),
                   rho=float(np.clip(d["residual_autocorrelation_lag1"], 0, 0.98)),
                   resid_scale=float(d.get("calibration", {}).get("resid_scale", 1.0)))


def simulate(rng: np.random.Generator, target: np.ndarray, up: np.ndarray, noise: World3DNoise) -> np.ndarray:
    """Simulated world landmarks for true joints.

    Args:
        target: ``(B, T, 27, 3)`` true root-relative joints, ``camera`` axes, metres.
        up: ``(B, 3)`` the world's up direction in each sequence's camera axes.
    Returns:
        ``(B, T, 27, 3)`` root-relative, metres, camera axes (the error model of the module docstring).
    """
    b, t = target.shape[:2]
    sc = noise.scale
    leg = _leg_len(target)                                                   # (B, T)
    up = up / np.linalg.norm(up, axis=-1, keepdims=True)
    body = _body_frames(target, up[:, None, :])                              # (B, T, 3, 3)
    off = np.einsum("btij,ni->btnj", body, noise.offset_body)               # (B, T, 27, 3)
    sc_r = sc * noise.resid_scale
    r = ar1(rng, (b, t, NJ, 3), noise.rho) * noise.sigma * sc_r
    tail = rng.random((b, t, NJ)) < noise.tail_fraction
    d = rng.standard_normal((b, t, NJ, 3))
    d /= np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-9)
    r += (tail * noise.tail_median * sc_r * np.exp(0.5 * rng.standard_normal((b, t, NJ))))[..., None] * d
    p = target + (off + r) * leg[..., None, None]
    rv = (noise.rv_mean + noise.rv_between * sc * rng.standard_normal((b, 3)))[:, None, :] \
        + ar1(rng, (b, t, 3), noise.rv_rho) * noise.rv_within * sc
    ls = (noise.ls_mean + noise.ls_between * sc * rng.standard_normal(b))[:, None] \
        + ar1(rng, (b, t), noise.ls_rho) * noise.ls_within * sc
    R = _from_rotvec(rv)                                                     # (B, T, 3, 3)
    out = np.exp(ls)[..., None, None] * np.einsum("btij,btnj->btni", R, p)
    return out - out[:, :, :1]
