"""Errors that ganedit reports to a user as one line, with exit code 2.

A `GaneditError` is raised for bad input: a missing file, a wrong format, an unknown name. Its message
says what was wrong (with the offending value) and how to fix it. The command line prints it without a
traceback; anything else that escapes is an internal error (exit code 1).
"""


class GaneditError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""

    exit_code = 2


class CheckpointFormatError(GaneditError):
    """A file that is not a checkpoint ganedit can read, or is damaged."""


class UnsafeCheckpointError(GaneditError):
    """A checkpoint that would execute code, or reference globals outside the allow-list, if loaded."""


class ArchitectureMismatchError(GaneditError):
    """Tensors that do not fit the architecture they claim (missing, unexpected or mis-shaped keys)."""


class GateMissed(GaneditError):
    """A --fail-under / --fail-over gate the results missed. The outputs and the report are written
    first; the command line then prints the missed gates as one line and exits 3."""

    exit_code = 3


class Terminated(KeyboardInterrupt):
    """SIGTERM: stops a run as Ctrl-C does (a training loop finishes its step and saves its resume file
    first); the command line exits 143. A KeyboardInterrupt, so whatever cleans up after Ctrl-C runs."""
