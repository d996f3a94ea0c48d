"""The `ganedit` command line: parse, load, call the Python API, report.

Progress and messages go to stderr, results to stdout. Progress is a bar on a terminal and plain lines
(start, end and every GANEDIT_HEARTBEAT_S seconds, default 10) when stderr is a file or a pipe;
`--quiet` silences it, third-party download bars included.

Exit codes (EXIT_CODES_HELP, also in `ganedit --help` and the README):
  0    success
  1    internal error: a bug in ganedit (rerun with GANEDIT_DEBUG=1 for the traceback and report it)
  2    bad input or usage: one line on stderr saying what is wrong and how to fix it, no partial output
  3    a --fail-under / --fail-over gate missed (the outputs and the report are written first)
  4    out of GPU memory (CUDA): retry with a smaller --batch-size (or --eval-samples), or --device cpu
  130  interrupted (Ctrl-C); a run that checkpoints saves OUTPUT.resume first and `--resume` continues it
  143  terminated (SIGTERM): the same save-and-stop as Ctrl-C, then exit

`--json`: stdout carries exactly one JSON document, nothing else (whatever else a command or a library
prints while it runs goes to stderr). It is strict JSON: NaN and infinities are null. Every document
is an object with, in every command (schema JSON_SCHEMA, now 1; raised when a key changes meaning):
  command          the subcommand: "embed-tune", "merge", "zoo list", ...
  ganedit_version  the ganedit that wrote it
  schema           the version of this key set
  written          every file the command wrote (models, patches, grids, kept intermediate models), a
                   list, [] when it wrote none
and, wherever they apply, with the same meaning in every command:
  model            the input model as given (a path or a zoo name); merge, with several, has `models`
  output           the main file written (the edited model or patch; also in `written`), or null
  grid             the before/after grid written (also in `written`), or null
  judge            the name of the judge that scored the report, or null (editing commands always carry it)
"""

import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

import click
import torch

import ganedit
from ganedit.cli.console import DownloadBar, quiet_third_party, stderr_console
from ganedit.errors import GaneditError, Terminated
from ganedit.store import zoo

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_GATE_MISSED, EXIT_OUT_OF_MEMORY = 0, 1, 2, 3, 4
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143
JSON_SCHEMA = 1
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
EXIT_CODES_HELP = """\b
Exit codes:
  0    success
  1    internal error, a bug (rerun with GANEDIT_DEBUG=1 and report the traceback)
  2    bad input or usage (one line on stderr says what is wrong)
  3    a --fail-under / --fail-over gate missed (outputs and report are written)
  4    out of GPU memory: retry with a smaller --batch-size, or --device cpu
  130  interrupted (Ctrl-C); runs that checkpoint save OUTPUT.resume: rerun with --resume
  143  terminated (SIGTERM), after the same save as Ctrl-C

\b
--json: stdout is one strict JSON document (NaN/infinity as null) with `command`, `ganedit_version`,
`schema` (now 1) and `written` (a list of the files written); everything else goes to stderr.
Progress on stderr is plain lines when stderr is not a terminal, every GANEDIT_HEARTBEAT_S seconds
(default 10); --quiet silences it, download bars included."""


def resolve_device(device: str) -> torch.device:
    """`auto` picks the first CUDA GPU when there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise GaneditError(f"--device {device!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise GaneditError(f"--device {device}: no CUDA GPU is available here; use --device cpu")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise GaneditError(
                f"--device {device}: there are only {torch.cuda.device_count()} CUDA GPU(s); use cuda:0.."
                f"{torch.cuda.device_count() - 1}"
            )
    elif resolved.type != "cpu":
        raise GaneditError(f"--device {device}: unsupported device type; use auto, cpu, cuda or cuda:N")
    return resolved


def common_options(function):
    """--device, --quiet and --offline, on every command."""
    function = click.option(
        "--offline",
        is_flag=True,
        help="Never download; use only cached zoo files (also GANEDIT_OFFLINE=1, HF_HUB_OFFLINE=1).",
    )(function)
    function = click.option("--quiet", "-q", is_flag=True, help="No progress or messages on stderr; results only.")(
        function
    )
    function = click.option(
        "--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:i]", help="Where to run."
    )(function)
    return function


def apply_common(device: str, quiet: bool, offline: bool) -> torch.device:
    stderr_console().quiet = quiet
    zoo.set_download_progress(DownloadBar)
    if quiet:
        _RUN.cleanup.enter_context(quiet_third_party())
    if offline:
        os.environ["GANEDIT_OFFLINE"] = "1"
    return resolve_device(device)


def check_writable(*paths) -> None:
    """Refuse, before any work, output paths (None = not asked for) whose folder does not exist."""
    for path in paths:
        if path is not None and not path.parent.exists():
            raise GaneditError(f"cannot write {path}: folder {path.parent} does not exist; create it first")


def add_plain_row(table, *cells: object) -> None:
    """A table row shown as written: values such as "[False, 4, 4]" are not rich markup."""
    from rich.text import Text

    table.add_row(*(Text(str(cell)) for cell in cells))


def resume_file(path: Path) -> Path:
    """Name the resume file (OUTPUT.resume) of the command now running, so that an interrupt's message can
    point to it and to --resume; returns the path."""
    _RUN.resume = Path(path)
    return _RUN.resume


def strict_json(value):
    """`value` as plain JSON data: NaN and infinities as None, tensors and numpy values as numbers and lists,
    paths and anything else unknown as strings (recursively, through dicts, lists and tuples)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key if isinstance(key, (str, int, float, bool)) or key is None else str(key): strict_json(item)
                for key, item in value.items()}  # fmt: skip
    if isinstance(value, (list, tuple, set, frozenset)):
        return [strict_json(item) for item in value]
    if isinstance(value, torch.Tensor):
        return strict_json(value.detach().cpu().tolist())
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return strict_json(value.tolist())
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return strict_json(dataclasses.asdict(value))
    return str(value)


def json_document(data: dict, command: str) -> dict:
    """The report `data` as the JSON document of `command`: the common keys first (see the module docstring),
    `written` made a list, everything strict JSON."""
    document = {"command": command, "ganedit_version": ganedit.__version__, "schema": JSON_SCHEMA, **data}
    written = document.get("written")
    if written is None:
        written = []
    elif isinstance(written, (str, Path)):
        written = [written]
    document["written"] = [str(path) for path in written]
    return strict_json(document)


def emit_json(data: dict, command: str | None = None) -> None:
    """Print the command's report as its one JSON document on stdout (the real stdout, at the end of the run,
    when main() has redirected stdout to stderr for --json). `command` defaults to the running subcommand."""
    if command is None:
        context = click.get_current_context(silent=True)
        command = " ".join(context.command_path.split()[1:]) if context is not None else "ganedit"
    text = json.dumps(json_document(data, command), indent=2, allow_nan=False)
    if _RUN.json_documents is not None:
        _RUN.json_documents.append(text)
    else:
        click.echo(text)


@click.group(context_settings=CONTEXT, epilog=EXIT_CODES_HELP)
@click.version_option(ganedit.__version__, "--version", "-V", prog_name="ganedit")
def cli():
    """Edit pre-trained GANs without their training data.

    MODEL arguments are a path (a BigGAN-deep folder, a StyleGAN2 rosinality .pt or NVIDIA .pkl, a
    ganedit .safetensors) or a zoo name (see `ganedit zoo list`).
    """


class _RunState:
    """What one main() call sets up and undoes: buffered JSON, the resume file, cleanups (quiet third parties)."""

    def __init__(self):
        self.json_documents: list[str] | None = None
        self.resume: Path | None = None
        self.started = time.time()
        self.cleanup = contextlib.ExitStack()


_RUN = _RunState()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the command and turn every failure into a one-line message and an exit code."""
    global _RUN
    args = list(sys.argv[1:] if argv is None else argv)
    options = args[: args.index("--")] if "--" in args else args
    previous, _RUN = _RUN, _RunState()
    try:
        with _RUN.cleanup, _sigterm_raises(), _stdout_to_stderr("--json" in options) as documents:
            _RUN.json_documents = documents
            return _run(args)
    finally:
        _RUN = previous


def _run(args: list[str]) -> int:
    try:
        cli.main(args=args, prog_name="ganedit", standalone_mode=False)
        return EXIT_OK
    except GaneditError as error:
        _error(str(error))
        return error.exit_code
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.UsageError as error:  # one line, as every bad input
        hint = f" (see `{error.ctx.command_path} --help`)" if error.ctx is not None else ""
        _error(error.format_message() + hint)
        return EXIT_BAD_INPUT
    except click.ClickException as error:
        _error(error.format_message())
        return error.exit_code
    except (click.Abort, KeyboardInterrupt) as error:  # click turns KeyboardInterrupt into Abort from it
        terminated = isinstance(error, Terminated) or isinstance(error.__cause__, Terminated)
        _error(_interrupt_message("terminated (SIGTERM)" if terminated else "interrupted"))
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    except torch.OutOfMemoryError as error:
        _error(_out_of_memory_message(error))
        return EXIT_OUT_OF_MEMORY
    except Exception as error:  # anything else is ganedit's bug, not the user's
        if isinstance(error, RuntimeError) and "out of memory" in str(error) and "CUDA" in str(error):
            _error(_out_of_memory_message(error))  # some CUDA libraries report it as a plain RuntimeError
            return EXIT_OUT_OF_MEMORY
        if os.environ.get("GANEDIT_DEBUG") == "1":
            raise
        _error(
            f"internal error: {type(error).__name__}: {error} "
            "(rerun with GANEDIT_DEBUG=1 for the traceback and report it)"
        )
        return EXIT_INTERNAL


def _interrupt_message(what: str) -> str:
    path = _RUN.resume
    if path is None:
        return what
    if path.exists():
        return f"{what}; the run is saved in {path}: run the same command with --resume to continue it"
    return f"{what} before the run saved anything to resume from ({path}); run the command again"


def _out_of_memory_message(error: Exception) -> str:
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    detail = f" ({first[:160]})" if first else ""
    return (f"out of GPU memory{detail}; retry with a smaller --batch-size (or --eval-samples), or with "
            f"--device cpu (exit code {EXIT_OUT_OF_MEMORY})")  # fmt: skip


@contextlib.contextmanager
def _sigterm_raises():
    """While a command runs, SIGTERM raises Terminated (a KeyboardInterrupt: the training loops save and stop
    as on Ctrl-C, and main() exits 143) instead of killing the process unannounced."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(_signum, _frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _stdout_to_stderr(active: bool):
    """With --json: while the command runs, stdout goes to stderr (Python's sys.stdout and, for a real
    process, file descriptor 1, so libraries' and C code's prints too); the JSON documents the command emits
    (the list yielded) are written to the real stdout at the end. Inactive: yields None."""
    if not active:
        yield None
        return
    documents: list[str] = []
    real = sys.stdout
    saved_fd = None
    try:
        fd_level = real.fileno() == 1 and sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        fd_level = False  # a captured stream (tests): Python-level redirection only
    real.flush()
    if fd_level:
        saved_fd = os.dup(1)
        os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        yield documents
    finally:
        sys.stdout = real
        real.flush()  # what was written to it directly while redirected goes where fd 1 went
        if saved_fd is not None:
            os.dup2(saved_fd, 1)
            os.close(saved_fd)
        for text in documents:
            click.echo(text, file=real)
        real.flush()


def _error(message: str) -> None:
    click.echo(f"ganedit: error: {message}", err=True)


def run() -> None:
    sys.exit(main())
