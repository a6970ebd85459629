"""Refit the lifter's foot-contact read-out on real MediaPipe output (docs/lifter.md §3, "Contacts from real detections").

The world-landmark weights learnt foot contact from synthetic 2D only. On real detections (the rendered cases of
:mod:`.rendered`: MediaPipe run on headless renders of mocap TRAIN clips) their contact probabilities come out blurred
around heel strike and toe-off, and wrong on the frames where BlazePose takes a back for a front; the closed-loop
benchmark's foot skate follows them (docs/benchmark.md). This step leaves the network and its pose read-out exactly
as they are and refits only the four contact columns of its last layer, which is linear (a 1x1 convolution over the
trunk's activations, ``core.lifting.trained.Lifter.trunk``):

* **Inputs as the job computes them** (``core.worker.job.lift_trained`` -> ``Lifter.lift``): the 60° field of view
  assumed, test-time flip (the logits of the direct view and, with left and right exchanged, of the mirrored view,
  averaged), the Gaussian output smoothing (``DEFAULT_SMOOTH_SIGMA``), then the sigmoid. All of these are linear in
  the read-out up to the sigmoid, so for contact point ``k`` (order ``CONTACT_ORDER``, ``π`` its other side)

      z_k = ½ (G·A_d · w_k + G·A_m · w_π(k) + b_k + b_π(k)),    p_k = σ(z_k)

  with ``A_d``, ``A_m`` the trunk's ``(T, C)`` activations of the direct and the mirrored input and ``G`` the
  smoothing. Each case is used in both orientations (the mirrored one with its labels exchanged), so the read-out
  stays left/right symmetric.
* **Fit**: logistic regression (mean binary cross-entropy against ``dataset.contact_labels`` of the true motion: a
  heel / toe within 5 cm of its floor and slower than 0.5 m/s) plus ``l2 · |W - W0|²`` towards the shipped read-out
  ``W0`` (which keeps what the synthetic training taught where the renders say nothing), solved by L-BFGS
  (scipy, deterministic) from ``W0``.
* **Validation**: the rendered cases of the validation clips (``rendered.is_validation``: whole clips) are not fitted;
  their cross-entropy and accuracy are reported before and after, per model, and choose ``l2`` among the values
  given (the lowest pooled validation cross-entropy).

Command (docs/lifter.md §4)::

    OMP_NUM_THREADS=1 .venv/bin/python -m tools.lifter_training.contact_head \\
        --weights core/lifting/weights/mocap_tcn_world.npz --rendered /work/cache/lifter_rendered --out OUT.npz

``OUT.npz`` is the input file with ``w{last}`` / ``b{last}``'s contact columns replaced and the step recorded in
``meta_contact_head`` (no pickles).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from core.lifting.trained import (_CONTACT_MIRROR, CONTACTS, DEFAULT_SMOOTH_SIGMA, gaussian_smooth,  # noqa: E402
                                  load_lifter)

__all__ = ["design", "fit_readout", "readout_loss", "write_weights", "main", "DEFAULT_L2"]

#: Weights of the pull towards the shipped read-out (per parameter, against the mean cross-entropy) tried.
DEFAULT_L2 = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


def design(lifter, cases, sigma: float = DEFAULT_SMOOTH_SIGMA):
    """The smoothed trunk activations of ``cases`` (:class:`.rendered.RenderedCase`) in both orientations:
    ``(A_d (N, C), A_m (N, C), labels (N, 4))`` float64, N = 2 x the cases' frames (60° assumed, as the job)."""
    ad, am, ys = [], [], []
    for c in cases:
        direct = gaussian_smooth(lifter.trunk(c.features[(True, False)]).astype(np.float64), sigma)
        mirror = gaussian_smooth(lifter.trunk(c.features[(True, True)]).astype(np.float64), sigma)
        for a, m, y in ((direct, mirror, c.contacts[False]), (mirror, direct, c.contacts[True])):
            ad.append(a)
            am.append(m)
            ys.append(np.asarray(y, dtype=np.float64))
    return np.concatenate(ad), np.concatenate(am), np.concatenate(ys)


def _logits(w, b, ad, am):
    return 0.5 * (ad @ w + (am @ w)[:, _CONTACT_MIRROR] + b + b[_CONTACT_MIRROR])


def readout_loss(w, b, ad, am, y) -> dict:
    """Mean binary cross-entropy and accuracy (threshold 0.5) of the read-out ``w (C, 4)``, ``b (4,)``."""
    z = _logits(w, b, ad, am)
    bce = np.logaddexp(0.0, z) - y * z
    return {"bce": float(bce.mean()), "acc": float(((z > 0) == (y > 0.5)).mean()), "frames": int(len(y) // 2)}


def fit_readout(w0, b0, ad, am, y, l2: float = 1e-3, max_iter: int = 500):
    """L2-regularised logistic regression of the contact read-out (module docstring): ``(w (C, 4), b (4,))``."""
    from scipy.optimize import minimize

    c = w0.shape[0]
    p0 = np.concatenate([w0.ravel(), b0])
    n = len(y)

    def f(p):
        w, b = p[:c * 4].reshape(c, 4), p[c * 4:]
        z = _logits(w, b, ad, am)
        loss = (np.logaddexp(0.0, z) - y * z).sum() / n + l2 * np.sum((p - p0) ** 2)
        g = (1.0 / (1.0 + np.exp(-z)) - y) / n                       # dL/dz, (N, 4)
        gm = g[:, _CONTACT_MIRROR]                                    # z_k takes w_π(k) on A_m: map back to k
        gw = 0.5 * (ad.T @ g + am.T @ gm)
        gb = 0.5 * (g.sum(0) + gm.sum(0))
        return loss, np.concatenate([gw.ravel(), gb]) + 2.0 * l2 * (p - p0)

    res = minimize(f, p0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return res.x[:c * 4].reshape(c, 4), res.x[c * 4:]


def write_weights(src: Path, out: Path, w, b, note: dict) -> None:
    """Copy the weights file ``src`` to ``out`` with the last layer's contact columns set to ``w``, ``b``."""
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    last = int(arrays["n_layers"]) - 1
    wl, bl = arrays[f"w{last}"].copy(), arrays[f"b{last}"].copy()
    wl[0][:, CONTACTS] = w.astype(wl.dtype)
    bl[CONTACTS] = b.astype(bl.dtype)
    arrays[f"w{last}"], arrays[f"b{last}"] = wl, bl
    arrays["meta_contact_head"] = np.array(json.dumps(note))
    np.savez(out, **arrays)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", type=Path, default=REPO / "core" / "lifting" / "weights" / "mocap_tcn_world.npz")
    ap.add_argument("--rendered", type=Path, required=True, help="folder of rendered cases (tools.lifter_training.rendered)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--l2", default=",".join(map(str, DEFAULT_L2)),
                    help="comma-separated pulls towards the shipped read-out; the validation clips choose one")
    args = ap.parse_args(argv)
    from tools.lifter_training import rendered

    t0 = time.time()
    lifter = load_lifter(args.weights)
    cases = rendered.load_all(args.rendered)
    train = [c for c in cases if not rendered.is_validation(c.clip)]
    val = [c for c in cases if rendered.is_validation(c.clip)]
    if not train:
        raise SystemExit(f"{args.rendered}: no rendered training cases")
    w_last, b_last = lifter._layers[-1]
    w0 = w_last[0][:, CONTACTS].astype(np.float64)
    b0 = b_last[CONTACTS].astype(np.float64)
    d_train = design(lifter, train)
    d_val = {m: design(lifter, [c for c in val if c.model == m]) for m in sorted({c.model for c in val})}
    if not d_val:
        raise SystemExit(f"{args.rendered}: no rendered case of a validation clip (rendered.is_validation): render more")
    pooled = tuple(np.concatenate([d[i] for d in d_val.values()]) for i in range(3))
    tried = {}
    for l2 in (float(v) for v in args.l2.split(",")):
        w, b = fit_readout(w0, b0, *d_train, l2=l2)
        tried[l2] = (readout_loss(w, b, *pooled)["bce"], w, b)
        print(f"l2 {l2:g}: validation BCE {tried[l2][0]:.4f}")
    l2 = min(tried, key=lambda k: tried[k][0])
    _, w, b = tried[l2]
    figs = {"train": {"before": readout_loss(w0, b0, *d_train), "after": readout_loss(w, b, *d_train)}}
    for model, d in d_val.items():
        figs[f"validation {model}"] = {"before": readout_loss(w0, b0, *d), "after": readout_loss(w, b, *d)}
    for k, v in figs.items():
        print(f"{k:18s} BCE {v['before']['bce']:.3f} -> {v['after']['bce']:.3f}, accuracy {v['before']['acc']:.3f} -> "
              f"{v['after']['acc']:.3f} ({v['after']['frames']} frames)")
    note = {"command": "python -m tools.lifter_training.contact_head " + " ".join(
                argv if argv is not None else sys.argv[1:]),
            "l2": l2, "l2_validation_bce": {str(k): round(v[0], 5) for k, v in tried.items()}, "train_cases": len(train), "validation_cases": len(val),
            "train_clips": sorted({c.clip for c in train}), "figures": figs, "seconds": round(time.time() - t0, 1)}
    write_weights(args.weights, args.out, w, b, note)
    print(f"wrote {args.out} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
