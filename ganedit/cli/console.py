"""Where ganedit writes: progress and messages to stderr, results to stdout.

`--quiet` sets `stderr_console().quiet`, which silences progress bars and messages but never results.
The progress bars here are what the command line passes down to the procedures (TrainingProgress) and
installs for the zoo's downloads (DownloadBar).
"""

import functools

from rich.console import Console


@functools.cache
def stderr_console() -> Console:
    return Console(stderr=True)


@functools.cache
def stdout_console() -> Console:
    return Console(soft_wrap=True)


class TrainingProgress:
    """A rich progress bar on stderr (one row per task) with the latest losses and an ETA; silent when quiet."""

    def __init__(self, quiet: bool = False):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.quiet = quiet
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[losses]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=stderr_console(),
            disable=quiet,
            transient=False,
        )

    def __enter__(self) -> "TrainingProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def task(self, description: str, total: int, completed: int = 0):
        return self.progress.add_task(description, total=total, completed=completed, losses="")

    def update(self, task, completed: int, losses: dict[str, float]) -> None:
        text = " ".join(f"{name} {value:.3g}" for name, value in losses.items())
        self.progress.update(task, completed=completed, losses=text)


class DownloadBar:
    """A download's progress bar on stderr (ganedit.store.zoo.set_download_progress)."""

    def __init__(self, description: str, total: int | None):
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

    def __enter__(self) -> "DownloadBar":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def advance(self, n: int) -> None:
        self.progress.advance(self.task, n)
