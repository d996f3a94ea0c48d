"""Fetching one file of the zoo (or of a judge) into the cache: the first of its addresses that answers.

- A Hugging Face Hub address (`https://huggingface.co/{repo_id}/resolve/{revision}/{filename}`) is
  fetched by `huggingface_hub.hf_hub_download`: the hub's own resumable, locked, etag-checked download,
  with `local_dir=` a hidden folder beside the target (`.NAME.hub`, where the hub keeps its partial file
  and bookkeeping), then moved into place. The file is a single copy on the cache's own disk (not in the
  hub's cache with a link or a second copy), the cache folder stays self-contained (GANEDIT_CACHE is all
  a CI needs to keep), and the hidden folder is removed once the file is in place, so a model folder,
  whose sha256 provenance records, holds only the model's files.
- Any other address is fetched with urllib into `NAME.part`, resumed with an HTTP Range request when a
  `.part` is left from an interrupted try (a server that ignores Range, answering 200 instead of 206,
  is read from the start), and tried `len(RETRY_WAITS_S) + 1` times when the failure is transient (no
  connection, a timeout, a cut-off transfer, a 5xx or 429 answer), then moved into place atomically.

A published sha256 is verified in both cases; a wrong file is deleted (the `.part` too, so the next try
starts from scratch) and the next address is tried. While a file is being fetched, its downloader holds
an exclusive `fcntl.flock` on `.NAME.lock` beside it: a second process fetching the same file waits, then
finds it in place and returns. Offline, nothing is fetched: the call stops with one line.
"""

import contextlib
import fcntl
import http.client
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ganedit.errors import GaneditError
from ganedit.store.lock import _is_our_file, lock_path

RETRY_WAITS_S = (1.0, 4.0)  # the pauses before the second and the third try of an address
CHUNK = 1 << 20
TIMEOUT_S = 60
HUB_URL = re.compile(
    r"https://huggingface\.co/(?:(?P<kind>datasets|spaces)/)?(?P<repo_id>[^/]+(?:/[^/]+)?)"
    r"/resolve/(?P<revision>[^/]+)/(?P<filename>.+)"
)
sleep = time.sleep  # how the pause before a retry is taken (tests replace it)

_download_progress = None


def set_download_progress(factory) -> None:
    """Install how downloads show progress: factory(description, total_bytes or None) returns a context
    manager with an `advance(n)` method (the command line's progress bar); None = silent."""
    global _download_progress
    _download_progress = factory


class _Silent:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def advance(self, n: int) -> None:
        pass


class _AddressFailed(Exception):
    """This address did not give the file (the hub's error, or a file with the wrong sha256)."""


class _Retryable(_AddressFailed):
    """A failure worth another try of the same address (a cut-off transfer, a range not asked for)."""


_FAILURES = (_AddressFailed, OSError, http.client.HTTPException)  # urllib's errors are OSErrors
_RETRYABLE = (_Retryable, urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException)


@dataclass(frozen=True)
class HubFile:
    repo_id: str
    filename: str
    revision: str
    repo_type: str | None = None  # None = a model repository


def hub_file(url: str) -> HubFile | None:
    """The Hub repository, file and revision a `huggingface.co/.../resolve/...` address names, else None."""
    parts = urllib.parse.urlsplit(url)
    match = HUB_URL.fullmatch(f"{parts.scheme}://{parts.netloc}{parts.path}")
    if match is None:
        return None
    kind = {"datasets": "dataset", "spaces": "space"}.get(match["kind"])
    unquote = urllib.parse.unquote
    return HubFile(match["repo_id"], unquote(match["filename"]), unquote(match["revision"]), kind)


def download(label: str, urls: tuple[str, ...], target: Path, sha256: str | None = None, offline: bool | None = None):
    """Fetch the first of `urls` that answers into `target` (atomically), reporting progress to the hook.

    `label` names the file's user in messages; `sha256` is the published hash, if any; `offline` None
    follows GANEDIT_OFFLINE / HF_HUB_OFFLINE. When every address fails: one line naming each address,
    why, and how to put the file there by hand.
    """
    from ganedit.store.zoo import is_offline

    target = Path(target)
    if is_offline() if offline is None else offline:
        raise GaneditError(
            f"{label}: {target.name} is not in {target.parent} and offline mode is on (--offline / HF_HUB_OFFLINE=1 "
            f"/ GANEDIT_OFFLINE=1); download {urls[0] if urls else 'it'} into that folder, or go online once"
        )
    errors = []
    with _download_lock(target):
        if target.is_file():  # another process fetched it while this one waited for the lock
            return
        for url in urls:
            hub = hub_file(url)
            try:
                fetched = _from_hub(hub, target) if hub else _over_http(label, url, target)
                _check_published(fetched, sha256)
            except _FAILURES as error:
                errors.append(f"{url}: {_reason(error)}")
                continue
            os.replace(fetched, target)
            shutil.rmtree(_hub_folder(target), ignore_errors=True)
            return
    raise GaneditError(
        f"{label}: could not download {target.name} ({'; '.join(errors)}); "
        f"download it by hand into {target.parent}, or pass a local path instead of a name"
    )


def _hub_folder(target: Path) -> Path:
    return target.with_name(f".{target.name}.hub")


def _from_hub(hub: HubFile, target: Path) -> Path:
    """The file fetched by huggingface_hub into the target's hidden hub folder."""
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(
            hub.repo_id, hub.filename, revision=hub.revision, repo_type=hub.repo_type, local_dir=_hub_folder(target)
        )
    except Exception as error:  # noqa: BLE001 (no repository, no such file, offline, HTTP: all mean this address failed)
        raise _AddressFailed(_reason(error)) from error
    return Path(path)


def _over_http(label: str, url: str, target: Path) -> Path:
    """`target`'s `.part` fetched from `url`, resumed where a previous try left it; transient failures are
    tried again after RETRY_WAITS_S."""
    partial = target.with_name(target.name + ".part")
    for wait in (None, *RETRY_WAITS_S):
        if wait is not None:
            sleep(wait)
        try:
            _fetch(label, url, partial, target.name)
            return partial
        except urllib.error.HTTPError as error:
            if error.code == 416:  # the .part does not fit the file as served now: start over
                partial.unlink(missing_ok=True)
            elif not (error.code >= 500 or error.code == 429):
                raise
            last = error
        except _RETRYABLE as error:
            last = error
    raise last


def _fetch(label: str, url: str, partial: Path, name: str) -> None:
    """Append the rest of `url` to `partial` (all of it when the server does not honour the range)."""
    have = partial.stat().st_size if partial.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        resumed = have > 0 and response.status == 206
        if resumed and not response.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
            partial.unlink()
            raise _Retryable(f"asked for bytes={have}-, the server sent {response.headers.get('Content-Range')}")
        start = have if resumed else 0
        length = int(response.headers.get("Content-Length") or 0) or None
        received = 0
        progress = (_download_progress or (lambda *_: _Silent()))(f"{label}: {name}", length and start + length)
        with open(partial, "ab" if resumed else "wb") as out, progress:
            progress.advance(start)
            while chunk := response.read(CHUNK):
                out.write(chunk)
                received += len(chunk)
                progress.advance(len(chunk))
    if length is not None and received < length:
        raise _Retryable(f"the transfer stopped after {start + received} of {start + length} bytes")


def _check_published(path: Path, sha256: str | None) -> None:
    from ganedit.store.provenance import sha256_of

    if sha256 and (actual := sha256_of(path)) != sha256:
        path.unlink()
        raise _AddressFailed(f"wrong sha256 {actual[:16]}..., expected {sha256[:16]}... (deleted)")


def _reason(error: BaseException) -> str:
    reason = getattr(error, "reason", None) or error
    if isinstance(error, urllib.error.HTTPError):
        reason = f"HTTP {error.code} {error.reason}"
    text = str(reason).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


@contextlib.contextmanager
def _download_lock(target: Path) -> Iterator[None]:
    """Hold `.NAME.lock` beside `target` exclusively for the block, waiting for another downloader."""
    path = lock_path(target)
    while True:
        descriptor = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another process downloads the file: say so while waiting for it
                waiting = (_download_progress or (lambda *_: _Silent()))(
                    f"waiting for another process downloading {target.name}", None
                )
                with waiting:
                    fcntl.flock(descriptor, fcntl.LOCK_EX)
        except OSError as error:
            if descriptor is not None:
                os.close(descriptor)
            raise GaneditError(
                f"cannot lock {path} to download {target.name}: {error.strerror or error}; "
                f"check that {target.parent} is writable, or set GANEDIT_CACHE to another folder"
            ) from None
        if _is_our_file(descriptor, path):
            break
        os.close(descriptor)  # the downloader that held it removed the file meanwhile: lock the new one
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # before the lock is released: a waiter never takes over a file about to go
        os.close(descriptor)
