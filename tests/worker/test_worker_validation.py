"""Issue 7: the worker answers every request line with a protocol message, and validates every option.

Before: deeply nested JSON killed the worker without a message; wrong option types gave ``internal`` errors or were
accepted (``device: "tpu"``).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _worker(line: str):
    r = subprocess.run([sys.executable, "-m", "core.worker"], input=line + "\n", capture_output=True, text=True,
                       cwd=REPO, timeout=120)
    return r.returncode, [json.loads(x) for x in r.stdout.splitlines()]


@pytest.mark.parametrize("line, needle", [
    ("[" * 200000 + "]" * 200000, "nested too deeply"),
    ('{"cmd": "estimate", "options": {"device": "tpu"}, "npz": "/tmp/a.npz"}', "unknown value 'tpu'"),
    ('{"cmd": "estimate", "options": {"start": "soon"}, "npz": "/tmp/a.npz"}', "--start must be a finite number"),
    ('{"cmd": "estimate", "options": {"crop": [1, 2, 3]}, "npz": "/tmp/a.npz"}', "--crop must be 4 whole numbers"),
    ('{"cmd": "estimate", "options": {"end": -1}, "npz": "/tmp/a.npz"}', "--end must be at least 0"),
    ('{"cmd": "estimate", "options": {"backend": 3}, "npz": "/tmp/a.npz"}', "--backend must be a non-empty text"),
    ('{"cmd": "estimate", "options": {"video": "x.mp4", "keypoints_fps": true}, "npz": "/tmp/a.npz"}',
     "--keypoints-fps must be a finite number"),
    ("\x00\x01 not json", "not JSON"),
])
def test_every_bad_line_gets_hello_then_one_bad_input_error(line, needle):
    rc, messages = _worker(line)
    assert rc == 1
    assert [m["type"] for m in messages] == ["hello", "error"]
    assert messages[-1]["code"] == "bad_input" and needle in messages[-1]["message"], messages[-1]
