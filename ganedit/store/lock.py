"""One run per output: the lock a run holds while it may write OUTPUT and OUTPUT.resume.

The lock is an exclusive `fcntl.flock` on a hidden file beside the output, `.OUTPUT.lock`, which holds
the pid of the run that took it. A second run on the same output is refused at once (the lock is never
waited for). The file is removed when the run ends, however it ends; a run killed outright (SIGKILL)
leaves the file behind, but the kernel has released its lock, so the next run takes the file over.
"""

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from ganedit.errors import GaneditError


def lock_path(output: Path | str) -> Path:
    """The lock file of `output`: `.NAME.lock` in the same folder."""
    output = Path(output)
    return output.with_name(f".{output.name}.lock")


@contextlib.contextmanager
def output_lock(output: Path | str) -> Iterator[Path]:
    """Hold the lock of `output` for the block (yields the lock file); a GaneditError when another run holds it."""
    path = lock_path(output)
    descriptor = _acquire(path, Path(output))
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            if _is_our_file(descriptor, path):
                path.unlink()  # before the lock is released: a new run never takes over a file about to go
        os.close(descriptor)


def _acquire(path: Path, output: Path) -> int:
    """An open descriptor of `path`, exclusively locked, with this process's pid written into it."""
    while True:
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            raise GaneditError(
                f"cannot create the lock file {path} for {output}: {error.strerror or error}; "
                "check the output folder's permissions, or choose another -o"
            ) from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(descriptor)
            os.close(descriptor)
            raise GaneditError(
                f"another ganedit run is writing {output} (lock {path} held by pid {holder}); "
                "wait for it or choose another -o"
            ) from None
        except OSError as error:
            os.close(descriptor)
            raise GaneditError(
                f"cannot lock {path} for {output}: {error.strerror or error}; choose an -o on a local disk"
            ) from None
        if _is_our_file(descriptor, path):
            break
        os.close(descriptor)  # the run that held it removed the file meanwhile: lock the new one
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"{os.getpid()}\n".encode())
    return descriptor


def _is_our_file(descriptor: int, path: Path) -> bool:
    """Whether `path` still names the file open as `descriptor`."""
    try:
        named, opened = os.stat(path), os.fstat(descriptor)
    except OSError:
        return False
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _holder(descriptor: int) -> str:
    """The pid the holder wrote into the lock file ("unknown" if it has not written it yet)."""
    try:
        text = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"
