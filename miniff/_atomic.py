"""Atomic file writes: a crash or a kill never leaves a half-written file behind.

The data go to a temporary file in the destination's folder, are flushed to disk, and the
temporary file is renamed over the destination with :func:`os.replace` (atomic on POSIX and
Windows). Until the rename the previous file stays intact.
"""

import os
import tempfile

__all__ = ["atomic_write", "atomic_write_text"]


def _default_mode():
    # mkstemp creates files readable by the owner only; give the file the permissions a plain
    # open() would have given it under the current umask.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path, write, binary=True):
    """Write a file atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; its folder must exist.
    write : callable
        ``write(file_object)`` writes the content into the open temporary file.
    binary : bool
        Open the temporary file in binary (default) or text mode.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f"cannot write {path!r}: it is a folder (give a file name inside it)")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path!r}: the folder {folder!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text):
    """Write the string ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write(text), binary=False)
