"""Where ganedit writes: progress and messages to stderr, results to stdout.

`--quiet` sets `stderr_console().quiet`, which silences progress bars and messages but never results.
"""

import functools

from rich.console import Console


@functools.cache
def stderr_console() -> Console:
    return Console(stderr=True)


@functools.cache
def stdout_console() -> Console:
    return Console(soft_wrap=True)
