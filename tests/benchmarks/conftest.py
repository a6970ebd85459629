"""Fixtures for the closed-loop benchmark tests.

Before ``bpy`` is first imported (by the render tests), ``BLENDER_USER_RESOURCES`` is pointed at a temporary folder,
so Blender never reads or writes the machine's real configuration (as in ``tests/blender/conftest.py``).
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile

_USER = None
if "bpy" not in sys.modules and "BLENDER_USER_RESOURCES" not in os.environ:
    _USER = tempfile.mkdtemp(prefix="closed_loop_test_blender_user_")
    os.environ["BLENDER_USER_RESOURCES"] = _USER


def pytest_unconfigure(config):
    if _USER:
        shutil.rmtree(_USER, ignore_errors=True)
