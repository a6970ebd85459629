"""Shared test fixtures: where the third-party data lives (``../shared/data`` beside the checkout)."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real videos, PMX, VMD, keypoints); skips with the reason if it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA} (it lives beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


#: Short name -> path under ``../shared/data`` of the real PMX models the engine tests pose (fixture ``model``).
MODELS = {
    "mat4": "pmx/mat4_trace_model/mat4_v4_trace_model.pmx",
    "yw": "pmx/yw_test_model/yw_test_model.pmx",
    "basic": "pmx/fixtures/test_basic_bone.pmx",
}


@pytest.fixture(scope="module")
def model(shared_data):
    """name -> ``core.rest_skeleton.RestSkeleton`` of :data:`MODELS` ('builtin': ``RestSkeleton.standard()``), read
    once per module."""
    from core.formats import pmx
    from core.rest_skeleton import RestSkeleton

    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = RestSkeleton.standard() if name == "builtin" else \
                RestSkeleton.from_pmx(pmx.read(shared_data / MODELS[name]))
        return cache[name]
    return get
