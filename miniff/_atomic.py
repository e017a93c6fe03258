"""Atomic file writes: a crash or a kill never leaves a half-written file behind.

The data go to a temporary file in the destination's folder, are flushed to disk, and the
temporary file is renamed over the destination with :func:`os.replace` (atomic on POSIX and
Windows). Until the rename the previous file stays intact.
"""

import contextlib
import os
import shutil
import tempfile

__all__ = ["atomic_write", "atomic_write_text", "atomic_folder"]


def _default_mode(base=0o666):
    # mkstemp creates files readable by the owner only; give the file the permissions a plain
    # open() would have given it under the current umask (base 0o777 for a folder, as os.mkdir).
    umask = os.umask(0)
    os.umask(umask)
    return base & ~umask


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


@contextlib.contextmanager
def atomic_folder(path, replaceable=None):
    """Write a whole folder atomically: ``with atomic_folder(path) as tmp:`` write the files into ``tmp``.

    The files go to a temporary folder next to ``path``; when the block ends without an error they are flushed
    to disk and the temporary folder is renamed to ``path``. An existing folder ``path`` stays intact until
    then; it is replaced only if every file in it is named in ``replaceable`` (a callable ``name -> bool``),
    otherwise ``FileExistsError`` is raised before anything is written. On an error the temporary folder is
    removed and ``path`` is left as it was.
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"cannot write {path!r}: the folder {parent!r} does not exist")
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise FileExistsError(f"cannot write the folder {path!r}: a file of that name exists")
        others = sorted(n for n in os.listdir(path) if replaceable is None or not replaceable(n))
        if others:
            raise FileExistsError(f"{path!r} exists and holds files that would be lost ({others[:5]}); write "
                                  f"to a new folder or remove them first")
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    try:
        yield tmp
        for name in os.listdir(tmp):
            with open(os.path.join(tmp, name), "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(os.path.join(tmp, name), _default_mode())
        os.chmod(tmp, _default_mode(0o777))
        if os.path.isdir(path):
            old = tmp + ".old"
            os.rename(path, old)
            try:
                os.rename(tmp, path)
            except BaseException:
                os.rename(old, path)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
