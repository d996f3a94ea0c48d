"""Atomic file writes: a file appears under its final name complete, or not at all."""

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from ganedit.errors import GaneditError


def atomic_write(path: Path | str, write: Callable[[str], None]) -> Path:
    """Call `write(temporary_path)` for a temporary file beside `path`, flush it to disk, then rename.

    An interrupted or failed write leaves nothing behind, and an existing file under `path` stays as
    it was until the rename. The file gets the permissions an ordinary new file would (0666 less the
    umask), not the private mode of a temporary file.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise GaneditError(f"cannot write {path}: folder {path.parent} does not exist; create it first")
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(temporary)
        with open(temporary, "rb") as stream:
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
