"""Training-state files (resume files): a `torch.save` payload sealed with its sha256, read weights-only.

Layout of a file:
- MAGIC, one line;
- a header, one line of JSON: {"format": the kind of state, "version": its version};
- the payload: `torch.save` of the state (a zip archive), read back with PyTorch's weights-only
  unpickler, which never runs code from the file;
- the digest: 32 bytes, the sha256 of everything before it.

The digest is checked before anything else is believed, so a file with any byte changed or cut off is
refused as damaged instead of resuming from corrupted state. Files are written atomically.
"""

import hashlib
import io
import json
import pickle
import re
from pathlib import Path

import torch

from ganedit.errors import GaneditError
from ganedit.store.atomic import atomic_write

MAGIC = b"ganedit training state\n"
ZIP_MAGIC = b"PK\x03\x04"  # what a plain torch.save file (an older ganedit's resume file) starts with
DIGEST_BYTES = 32
MAX_HEADER_BYTES = 4096
CHUNK_BYTES = 1 << 20


class _Sealing:
    """A binary stream that keeps the sha256 of everything written through it, and the OSError of a failed
    write (torch.save reports a failure of the stream it writes to as a RuntimeError that names no cause)."""

    def __init__(self, stream):
        self.stream, self.digest, self.failure = stream, hashlib.sha256(), None

    def write(self, data) -> int:
        self.digest.update(data)
        try:
            return self.stream.write(data)
        except OSError as error:
            self.failure = error
            raise

    def flush(self) -> None:
        self.stream.flush()


class _Section(io.RawIOBase):
    """Bytes [start, end) of a seekable binary stream, as a stream of their own (the payload, for torch.load)."""

    def __init__(self, stream, start: int, end: int):
        self.stream, self.start, self.size, self.position = stream, start, end - start, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer) -> int:
        count = max(0, min(len(buffer), self.size - self.position))
        self.stream.seek(self.start + self.position)
        data = self.stream.read(count)
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


def write_state_file(path: Path | str, format_name: str, version: int, state: dict) -> Path:
    """Write `state` (tensors, numbers, strings, lists, dicts) to `path`, sealed and atomically."""
    header = MAGIC + json.dumps({"format": format_name, "version": version}).encode() + b"\n"

    def write(temporary: str) -> None:
        with open(temporary, "wb") as stream:
            sealed = _Sealing(stream)
            sealed.write(header)
            try:
                torch.save(state, sealed)
            except RuntimeError:
                if sealed.failure is not None:
                    raise sealed.failure from None
                raise
            stream.write(sealed.digest.digest())

    return atomic_write(path, write)


def read_state_file(path: Path | str, format_name: str, version: int, what: str, advice: str) -> dict:
    """The state `write_state_file` wrote at `path` for `format_name` / `version`, or a one-line GaneditError.

    `what` names the kind of file in the errors ("resume file of `ganedit merge`"), `advice` says what to do about a
    bad one. A damaged file (checksum mismatch, cut off), an older or another format, a version this code
    does not read and a payload that would run code are all refused before the state is used.
    """
    path = Path(path)
    try:
        with open(path, "rb") as stream:
            return _read(stream, path, format_name, version, what, advice)
    except FileNotFoundError:
        raise GaneditError(f"{path} does not exist; check the path") from None
    except IsADirectoryError:
        raise GaneditError(f"{path} is a folder, not a {what}; {advice}") from None
    except OSError as error:
        raise GaneditError(f"cannot read {path}: {error.strerror or error}; check the file") from None


def _read(stream, path: Path, format_name: str, version: int, what: str, advice: str) -> dict:
    size = stream.seek(0, io.SEEK_END)
    stream.seek(0)
    head = stream.read(len(MAGIC))
    if head.startswith(ZIP_MAGIC):
        raise GaneditError(
            f"{path} is not a {what} this ganedit reads (it is an older ganedit's, written without a checksum, "
            f"or another PyTorch file); {advice}"
        )
    if not MAGIC.startswith(head):
        raise GaneditError(f"{path} is damaged or not a {what} (it does not start as one); {advice}")
    if size < len(MAGIC) + DIGEST_BYTES or _digest(stream, size - DIGEST_BYTES) != stream.read(DIGEST_BYTES):
        raise GaneditError(f"{path} is damaged (checksum mismatch); {advice}")

    stream.seek(len(MAGIC))
    line = stream.readline(MAX_HEADER_BYTES)
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if not isinstance(header, dict) or not line.endswith(b"\n"):
        raise GaneditError(f"{path}: not a readable {what} (its header is not JSON); {advice}")
    if header.get("format") != format_name:
        raise GaneditError(f"{path} is not a {what} (it holds {header.get('format')!r}); {advice}")
    if header.get("version") != version:
        raise GaneditError(
            f"{path}: version {header.get('version')!r} of this {what} is not supported (this ganedit reads "
            f"version {version}); {advice}"
        )
    payload = _Section(stream, stream.tell(), size - DIGEST_BYTES)
    try:
        state = torch.load(payload, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        offending = re.search(r"GLOBAL ([\w.]+)", str(error))
        if offending:
            raise GaneditError(
                f"{path}: refused to load, the file references {offending[1]!r}, outside the weights-only "
                f"allow-list (ganedit never runs code from a file); {advice}"
            ) from None
        raise GaneditError(f"{path}: not a readable {what} ({_first_line(error)}); {advice}") from None
    except (RuntimeError, EOFError, ValueError, TypeError, AttributeError, KeyError) as error:
        raise GaneditError(f"{path}: not a readable {what} ({_first_line(error)}); {advice}") from None
    if not isinstance(state, dict):
        raise GaneditError(f"{path}: not a {what} (it holds a {type(state).__name__}, not a state); {advice}")
    return state


def state_mismatch(source: str, detail: str) -> GaneditError:
    """The one-line error for a readable state that does not fit the run loading it (a file crafted, or
    written by another version): `source` names the file and the part, `detail` what is wrong."""
    return GaneditError(f"{source} does not fit this run ({detail}); delete it and start again without --resume")


def _digest(stream, end: int) -> bytes:
    """The sha256 of bytes [0, end) of `stream`; leaves the stream at `end`."""
    digest = hashlib.sha256()
    stream.seek(0)
    remaining = end
    while remaining > 0:
        chunk = stream.read(min(CHUNK_BYTES, remaining))
        if not chunk:
            break
        digest.update(chunk)
        remaining -= len(chunk)
    return digest.digest()


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__
