"""The closed-loop case sets: every case is a held-out clip on a known model, and no name is used twice (a name is
the render's cache folder, so a duplicate would score one case's render as another's)."""
from __future__ import annotations

import pytest

from benchmarks.closed_loop import evaluate as E

SETS = {"default": E.DEFAULT_CASES, "extra": E.EXTRA_CASES, "travel": E.TRAVEL_CASES, "cuts": E.CUT_CASES,
        "portrait": E.PORTRAIT_CASES, "textured": E.TEXTURED_CASES}
ALL = [c for cases in SETS.values() for c in cases]


def test_case_names_are_unique_and_models_known():
    names = [c.name for c in ALL]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    assert {c.model for c in ALL} <= set(E.MODELS)


def test_every_mocap_case_is_held_out_of_training():
    mocap = E._mocap()
    if not mocap.MOCAP_DIR.is_dir():
        pytest.skip(f"no mocap data at {mocap.MOCAP_DIR}")
    test = {f"{p.parent.name}/{p.stem}" for p in mocap.split()["test"]}
    train = {f"{p.parent.name}/{p.stem}" for p in mocap.split()["train"]}
    for c in ALL:
        if c.source != "vmd":
            assert c.source in test and c.source not in train, c.name


def test_textured_cases_repeat_the_yw_dance_cases_on_mat4():
    """Same motion and camera as the yw cases they stand beside, only the model differs."""
    yw = {(c.source, c.yaw_deg, c.hfov_deg, c.height_m, c.size) for c in E.DEFAULT_CASES + E.EXTRA_CASES
          if c.model == "yw"}
    for c in E.TEXTURED_CASES:
        assert c.model == "mat4"
        assert (c.source, c.yaw_deg, c.hfov_deg, c.height_m, c.size) in yw, c.name
