"""Fixtures of the engine tests: the shared real models as rest skeletons."""
from __future__ import annotations

import pytest

from core.formats import pmx
from core.rest_skeleton import RestSkeleton

#: Short name -> path under ``../shared/data`` of the real PMX models the tests pose.
MODELS = {
    "mat4": "pmx/mat4_trace_model/mat4_v4_trace_model.pmx",
    "yw": "pmx/yw_test_model/yw_test_model.pmx",
    "basic": "pmx/fixtures/test_basic_bone.pmx",
}


@pytest.fixture(scope="module")
def model(shared_data):
    """name -> RestSkeleton of :data:`MODELS` ('builtin': ``RestSkeleton.standard()``, no file), read once."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = RestSkeleton.standard() if name == "builtin" else \
                RestSkeleton.from_pmx(pmx.read(shared_data / MODELS[name]))
        return cache[name]
    return get
