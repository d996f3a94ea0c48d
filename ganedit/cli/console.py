"""Where ganedit writes: progress and messages to stderr, results to stdout.

`--quiet` sets `stderr_console().quiet`, which silences progress bars and messages but never results,
and `quiet_third_party()` silences the download bars of the libraries ganedit calls (torch hub and
torchvision, Hugging Face hub, anything drawn with tqdm).

The progress displays here are what the command line passes down to the procedures (TrainingProgress)
and installs for the zoo's downloads (DownloadBar). On a terminal they are rich bars; when stderr is
not a terminal (a pipeline's log file, a CI job) they print plain lines instead: at the start and end
of each stage and every `GANEDIT_HEARTBEAT_S` seconds (default 10) in between, each with the stage,
the step and total, the latest losses, the elapsed time and an ETA.
"""

import contextlib
import functools
import math
import os
import sys
import threading
import time

from rich.console import Console

HEARTBEAT_ENV = "GANEDIT_HEARTBEAT_S"
DEFAULT_HEARTBEAT_S = 10.0


@functools.cache
def stderr_console() -> Console:
    return Console(stderr=True)


@functools.cache
def stdout_console() -> Console:
    return Console(soft_wrap=True)


def heartbeat_seconds() -> float:
    """The interval of the plain progress lines: GANEDIT_HEARTBEAT_S, default 10 s."""
    from ganedit.errors import GaneditError

    value = os.environ.get(HEARTBEAT_ENV, "").strip()
    if not value:
        return DEFAULT_HEARTBEAT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not seconds > 0 or math.isinf(seconds):
        raise GaneditError(f"{HEARTBEAT_ENV}={value!r} is not a number of seconds > 0; e.g. {HEARTBEAT_ENV}=10")
    return seconds


def plain_progress() -> bool:
    """True when progress should be plain lines: stderr is not a terminal (a log file, a pipe)."""
    return not stderr_console().is_terminal


def say(line: str) -> None:
    """One plain line on stderr (silent when quiet), never wrapped or styled."""
    stderr_console().print(line, markup=False, highlight=False, soft_wrap=True)


def clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _PlainTask:
    def __init__(self, description: str, total: int | None, completed: int):
        self.description, self.total, self.completed = description, total, completed
        self.first, self.started = completed, time.monotonic()
        self.losses = ""
        self.finished = False

    def step_text(self) -> str:
        if self.total:
            return f"step {self.completed}/{self.total} ({100 * self.completed / self.total:.0f}%)"
        return f"step {self.completed}"

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        parts = [f"{self.description}: {self.step_text()}"]
        if self.losses:
            parts.append(self.losses)
        parts.append(f"elapsed {clock(elapsed)}")
        done = self.completed - self.first
        if self.total and done > 0 and elapsed > 0:
            parts.append(f"eta {clock((self.total - self.completed) * elapsed / done)}")
        else:
            parts.append("eta ?")
        return ", ".join(parts)


class _PlainLines:
    """TrainingProgress's display when stderr is not a terminal: start, heartbeat and end lines."""

    def __init__(self, interval: float):
        self.interval = interval
        self.tasks: list[_PlainTask] = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="ganedit-heartbeat", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5)
        with self.lock:
            for task in self.tasks:
                if not task.finished:
                    elapsed = clock(time.monotonic() - task.started)
                    say(f"{task.description}: stopped at {task.step_text()}, elapsed {elapsed}")
                    task.finished = True

    def _beat(self) -> None:
        while not self.stopped.wait(self.interval):
            with self.lock:
                for task in self.tasks:
                    if not task.finished:
                        say(task.line())

    def add(self, description: str, total: int | None, completed: int) -> _PlainTask:
        task = _PlainTask(description, total, completed)
        with self.lock:
            self.tasks.append(task)
            say(f"{description}: start, {task.step_text()}")
        return task

    def update(self, task: _PlainTask, completed: int, losses: str, total: int | None) -> None:
        with self.lock:
            if total is not None:
                task.total = total
            task.completed, task.losses = completed, losses
            if task.total and completed >= task.total and not task.finished:
                task.finished = True
                elapsed = time.monotonic() - task.started
                say(f"{task.description}: done, {task.step_text()}" + (f", {losses}" if losses else "")
                    + f", in {clock(elapsed)}")  # fmt: skip


class TrainingProgress:
    """Progress of training on stderr, one row per task (stage) with the latest losses and an ETA.

    A rich bar on a terminal; plain lines when stderr is not one (see the module docstring); silent when
    quiet. `plain` forces one or the other (None: decide from stderr).
    """

    def __init__(self, quiet: bool = False, plain: bool | None = None):
        self.quiet = quiet
        self.plain = None
        self.progress = None
        if quiet:
            return
        if plain if plain is not None else plain_progress():
            self.plain = _PlainLines(heartbeat_seconds())
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[losses]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=stderr_console(),
            transient=False,
        )

    def __enter__(self) -> "TrainingProgress":
        if self.progress is not None:
            self.progress.__enter__()
        if self.plain is not None:
            self.plain.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)
        if self.plain is not None:
            self.plain.stop()

    def task(self, description: str, total: int | None, completed: int = 0):
        if self.plain is not None:
            return self.plain.add(description, total, completed)
        if self.progress is not None:
            return self.progress.add_task(description, total=total, completed=completed, losses="")
        return None

    def update(self, task, completed: int, losses: dict[str, float] | None = None, total: int | None = None) -> None:
        text = " ".join(f"{name} {value:.3g}" for name, value in (losses or {}).items())
        if self.plain is not None:
            self.plain.update(task, completed, text, total)
        elif self.progress is not None:
            extra = {} if total is None else {"total": total}
            self.progress.update(task, completed=completed, losses=text, **extra)


class DownloadBar:
    """A download's progress on stderr (ganedit.store.zoo.set_download_progress): a rich bar on a terminal,
    else plain lines at the start, every GANEDIT_HEARTBEAT_S seconds and at the end."""

    def __init__(self, description: str, total: int | None):
        self.description, self.total, self.done = description, total, 0
        self.plain = plain_progress()
        if self.plain:
            self.interval, self.started, self.last = heartbeat_seconds(), time.monotonic(), time.monotonic()
            return
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        self.progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=stderr_console(),
            transient=True,
        )
        self.task = self.progress.add_task(description, total=total)

    def _size(self) -> str:
        done = f"{self.done / 1e6:.1f} MB"
        return f"{done} of {self.total / 1e6:.1f} MB" if self.total else done

    def __enter__(self) -> "DownloadBar":
        if self.plain:
            say(f"downloading {self.description}" + (f" ({self.total / 1e6:.1f} MB)" if self.total else ""))
        else:
            self.progress.__enter__()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if not self.plain:
            self.progress.__exit__(exc_type, *exc)
            return
        elapsed = clock(time.monotonic() - self.started)
        say(f"{self.description}: {'downloaded' if exc_type is None else 'stopped at'} {self._size()} in {elapsed}")

    def advance(self, n: int) -> None:
        self.done += n
        if not self.plain:
            self.progress.advance(self.task, n)
        elif time.monotonic() - self.last >= self.interval:
            self.last = time.monotonic()
            say(f"{self.description}: {self._size()}, elapsed {clock(self.last - self.started)}")


_THIRD_PARTY_ENV = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


@contextlib.contextmanager
def quiet_third_party(active: bool = True):
    """Within the block, the download bars of torch hub / torchvision (and LPIPS, which loads through
    them), the Hugging Face hub (open_clip's weights) and tqdm are off; as they were afterwards."""
    if not active:
        yield
        return
    saved_env = {name: os.environ.get(name) for name in _THIRD_PARTY_ENV}
    os.environ.update(_THIRD_PARTY_ENV)
    restore = []
    hub = sys.modules.get("torch.hub")
    if hub is not None:
        original = hub.download_url_to_file

        def download_url_to_file(url, dst, hash_prefix=None, progress=True):
            return original(url, dst, hash_prefix, progress=False)

        hub.download_url_to_file = download_url_to_file
        restore.append(lambda: setattr(hub, "download_url_to_file", original))
    hf_utils = sys.modules.get("huggingface_hub.utils")
    if hf_utils is not None and hasattr(hf_utils, "disable_progress_bars"):
        was_disabled = hf_utils.are_progress_bars_disabled()
        hf_utils.disable_progress_bars()
        if not was_disabled:
            restore.append(hf_utils.enable_progress_bars)
    try:
        yield
    finally:
        for undo in reversed(restore):
            undo()
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
