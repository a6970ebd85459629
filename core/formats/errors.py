"""The one error type the format readers raise."""
from __future__ import annotations


class FormatError(ValueError):
    """A malformed or unsupported MMD file.

    The message always names the file and the byte offset where reading failed, e.g.
    ``"model.pmx: byte 1234: vertex 1: bone index 300 out of range (114 bones)"``.
    """

    def __init__(self, path, offset: int, message: str):
        self.path = str(path)
        self.offset = int(offset)
        self.reason = message
        super().__init__(f"{self.path}: byte {self.offset}: {message}")
