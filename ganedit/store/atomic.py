"""Writing files safely: atomically, checked before the work, and undone when the run fails.

- `atomic_write`: a file appears under its final name complete, or not at all. An error of the machine
  (no space left, a read-only folder, no permission) is one line, `OutputError`, naming the file, the
  reason and what to do; the temporary file is removed.
- `check_output_folder` / `check_free_space`: before any work, a write probe of each output folder and
  the free space against the expected size, so that a run that cannot write its results does not start.
- `output_journal`: the command line runs each command inside one. Every file written through
  `atomic_write` and every folder made with `make_folder` is recorded, and if the command fails (any
  exception, an interrupt included) they are removed again: a failed run leaves no partial output.
  Resume files (`*.resume`) are the one exception: they are what an interrupted run is for.
"""

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from ganedit.errors import GaneditError

RESUME_SUFFIX = ".resume"
_MACHINE_ERRORS = {
    errno.ENOSPC: "free space on that disk, or write elsewhere",
    errno.EDQUOT: "free space in your quota, or write elsewhere",
    errno.EROFS: "the folder is on a read-only file system; write elsewhere",
    errno.EACCES: "check the folder's permissions, or write elsewhere",
    errno.EPERM: "check the folder's permissions, or write elsewhere",
    errno.EFBIG: "the file is too large for that file system; write elsewhere",
    errno.EIO: "check the free space and the disk, or write elsewhere",
    errno.ENAMETOOLONG: "give a shorter file name",
}


def machine_error(error: OSError) -> "OutputError | None":
    """The one-line error of an OSError of the machine (no space, read-only, permission, name too long) that
    escaped from anywhere, or None for other OSErrors (which are bugs to report)."""
    if error.errno not in _MACHINE_ERRORS:
        return None
    where = error.filename if error.filename is not None else "a file"
    return output_error(where, error, "write or read")


class OutputError(GaneditError):
    """A file that could not be written: no space, a read-only folder, no permission."""


def output_error(path: Path | str, error: OSError, what: str = "write") -> OutputError:
    """The one-line error for an OSError while writing `path`."""
    reason = error.strerror or type(error).__name__
    fix = _MACHINE_ERRORS.get(error.errno, "check the folder, or write elsewhere")
    return OutputError(f"cannot {what} {path}: {reason}; {fix}")


class _Journal:
    def __init__(self):
        self.files: list[Path] = []
        self.folders: list[Path] = []


_JOURNALS: list[_Journal] = []


@contextlib.contextmanager
def output_journal(keep_on: tuple[type[BaseException], ...] = ()) -> Iterator[_Journal]:
    """Within the block, record what is written; if the block raises (anything but `keep_on`, e.g. a missed
    gate, whose outputs are meant to stay), remove it again, resume files excepted."""
    journal = _Journal()
    _JOURNALS.append(journal)
    try:
        yield journal
    except keep_on:
        raise
    except BaseException:
        _undo(journal)
        raise
    finally:
        _JOURNALS.remove(journal)


def _undo(journal: _Journal) -> None:
    for path in reversed(journal.files):
        if not path.name.endswith(RESUME_SUFFIX):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
    for folder in reversed(journal.folders):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only if empty: never what was there before


def _record(path: Path) -> None:
    if _JOURNALS:
        _JOURNALS[-1].files.append(path)


def make_folder(folder: Path | str) -> Path:
    """`mkdir -p` of an output folder; the folders it creates are removed again if the run fails."""
    folder = Path(folder)
    missing = []
    probe = folder
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    if probe != folder and not probe.is_dir():
        raise GaneditError(f"cannot make folder {folder}: {probe} is a file; give another folder")
    for created in reversed(missing):
        try:
            created.mkdir()
        except FileExistsError:
            continue
        except OSError as error:
            raise output_error(created, error, "make folder") from None
        if _JOURNALS:
            _JOURNALS[-1].folders.append(created)
    if not folder.is_dir():
        raise GaneditError(f"cannot write into {folder}: it is a file, not a folder; give a folder")
    return folder


def check_output_folder(folder: Path | str) -> None:
    """Refuse, before any work, a folder that does not exist or cannot be written to (a write probe)."""
    folder = Path(folder)
    if not folder.exists():
        raise GaneditError(f"cannot write to folder {folder}: it does not exist; create it first")
    if not folder.is_dir():
        raise GaneditError(f"cannot write to {folder}: it is a file, not a folder; give a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=".ganedit-probe.", dir=folder)
    except OSError as error:
        raise output_error(folder, error, "write to folder") from None
    os.close(handle)
    Path(probe).unlink(missing_ok=True)


def check_free_space(path: Path | str, needed: int, what: str = "the output") -> None:
    """Refuse, before the work, to start a run whose output (`needed` bytes) will not fit where it goes."""
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # nothing to measure with; the write itself will say
    if needed > free:
        raise OutputError(
            f"cannot write {what} to {path}: it needs about {byte_size(needed)} and {folder} has "
            f"{byte_size(free)} free; free space there, or write elsewhere"
        )


def byte_size(count: int) -> str:
    """A byte count as people read it: `5.1 MB`, `150.0 GB` (astronomical ones as a power of two)."""
    if count >= 10**18:
        return f"about 2**{count.bit_length() - 1} bytes"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def atomic_write(path: Path | str, write: Callable[[str], None]) -> Path:
    """Call `write(temporary_path)` for a temporary file beside `path`, flush it to disk, then rename.

    An interrupted or failed write leaves nothing behind, and an existing file under `path` stays as
    it was until the rename. The file gets the permissions an ordinary new file would (0666 less the
    umask), not the private mode of a temporary file. The machine's errors (no space, read-only,
    permission) are an OutputError.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise GaneditError(f"cannot write {path}: folder {path.parent} does not exist; create it first")
    if path.is_dir():
        raise GaneditError(f"cannot write {path}: it is a folder; give a file name")
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise output_error(path, error) from None
    os.close(handle)
    try:
        write(temporary)
        with open(temporary, "rb") as stream:
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except Exception as error:
        Path(temporary).unlink(missing_ok=True)
        machine = _as_machine_error(error)
        if machine is not None:
            raise output_error(path, machine) from None
        raise
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _record(path)
    return path


def _as_machine_error(error: Exception) -> OSError | None:
    """The OSError of the machine behind a failed write, also where a library reports it as its own error
    (safetensors: "... (os error 28)"; torch.save: "file write failed"); None for anything else."""
    if isinstance(error, OSError):
        return error if error.errno in _MACHINE_ERRORS else None
    text = str(error)
    found = re.search(r"os error (\d+)", text)
    if found and int(found.group(1)) in _MACHINE_ERRORS:
        number = int(found.group(1))
        return OSError(number, os.strerror(number))
    for code in _MACHINE_ERRORS:
        if os.strerror(code) in text:
            return OSError(code, os.strerror(code))
    if "write failed" in text or "file write" in text:  # torch's stream writer, which names no errno
        return OSError(errno.EIO, "the write failed (is the disk full?)")
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
