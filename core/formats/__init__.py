"""MMD file formats (VMD motion, PMX model): numpy and the standard library only.

Each module offers a ``read(path)`` / ``write(path, data)`` pair (PMX is read-only) and
raises :class:`core.formats.errors.FormatError` naming the file and byte offset on bad input.
"""
