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
from ganedit.cli.console import DownloadBar, heartbeat_seconds, quiet_third_party, stderr_console
from ganedit.errors import GaneditError, GateMissed, Terminated
from ganedit.settings import SEED_RANGE
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
    """--device, --quiet, --offline and --allow-nonfinite, on every command."""
    function = click.option(
        "--allow-nonfinite",
        is_flag=True,
        help="Load models whose weights hold NaN or infinity (to inspect them; also GANEDIT_ALLOW_NONFINITE=1).",
    )(function)
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


def apply_common(device: str, quiet: bool, offline: bool, allow_nonfinite: bool = False) -> torch.device:
    stderr_console().quiet = quiet
    heartbeat_seconds()  # a bad GANEDIT_HEARTBEAT_S is refused before any work, whatever the command
    zoo.set_download_progress(DownloadBar)
    if quiet:
        _RUN.cleanup.enter_context(quiet_third_party())
    if offline:
        os.environ["GANEDIT_OFFLINE"] = "1"
    if allow_nonfinite:
        os.environ["GANEDIT_ALLOW_NONFINITE"] = "1"  # read by ganedit.load_model
    resolved = resolve_device(device)
    from ganedit.engine import distributed

    if distributed.launched_by_torchrun():
        resolved = _join_processes(resolved, distributed)
    return resolved


DISTRIBUTED_COMMANDS = ("unlearn", "merge", "text-unlearn")  # the commands that train data-parallel under torchrun


def _join_processes(device: torch.device, distributed) -> torch.device:
    """Under torchrun: join the run's process group (ganedit.engine.distributed), on this process's device;
    processes other than rank 0 print nothing but their own failures, and write nothing."""
    context = click.get_current_context(silent=True)
    command = context.command_path.removeprefix("ganedit").strip() if context is not None else "?"
    if command not in DISTRIBUTED_COMMANDS:
        raise GaneditError(f"`ganedit {command}` runs in one process; run it without torchrun (torchrun runs "
                           f"{', '.join(DISTRIBUTED_COMMANDS)})")  # fmt: skip
    device = distributed.start_from_environment(device)
    _RUN.cleanup.callback(distributed.stop)
    if not distributed.is_main_process():
        stderr_console().quiet = True
        _RUN.cleanup.enter_context(quiet_third_party())
    return device


def lock_output(output: Path) -> None:
    """One run per output, until the command ends (ganedit.store.lock); in a run of several processes, rank 0
    holds it for all."""
    from ganedit.engine import distributed
    from ganedit.store.lock import output_lock

    if distributed.is_main_process():
        click.get_current_context().with_resource(output_lock(output))


def other_process() -> bool:
    """True in a process of a torchrun run other than rank 0: it trained with the others and now stops, since
    rank 0 evaluates, writes and reports for the run."""
    from ganedit.engine import distributed

    return not distributed.is_main_process()


SEED = click.IntRange(*SEED_RANGE)  # the click type of every --seed the settings dataclasses do not declare


class FiniteFloat(click.ParamType):
    """A float option that refuses NaN and infinities (click.FLOAT accepts both), optionally in a range."""

    name = "number"

    def __init__(self, low: float | None = None, high: float | None = None, low_open: bool = False):
        self.low, self.high, self.low_open = low, high, low_open

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.low is not None and (number < self.low or (self.low_open and number == self.low)):
            self.fail(f"{number:g} must be {'above' if self.low_open else 'at least'} {self.low:g}", param, ctx)
        if self.high is not None and number > self.high:
            self.fail(f"{number:g} must be at most {self.high:g}", param, ctx)
        return number


def check_writable(*paths, inputs=()) -> None:
    """Refuse, before any work, output paths (None = not asked for) that cannot be written: a folder that does
    not exist or is not writable (a write probe), a path that is a folder, a path that is one of the `inputs`
    (a model or file the command reads: writing there would destroy it), or two outputs on one path."""
    from ganedit.store.atomic import check_output_folder

    readers = {_same_file_key(path) for path in inputs if path is not None and Path(path).expanduser().exists()}
    seen = set()
    for path in paths:
        if path is None:
            continue
        path = Path(path)
        if any(len(part.encode()) > 255 for part in path.parts):
            raise GaneditError(f"cannot write {str(path)[:80]}...: a file or folder name longer than 255 bytes; "
                               "give a shorter name")  # fmt: skip
        if path.is_dir():
            raise GaneditError(f"cannot write {path}: it is a folder; give a file name (e.g. {path / 'out'}...)")
        check_output_folder(path.parent)
        key = _same_file_key(path)
        if key in readers:
            raise GaneditError(f"cannot write {path}: it is an input of this command; give another output file")
        if key in seen:
            raise GaneditError(f"{path} is given for two outputs; give each its own file")
        seen.add(key)


def check_room(path: Path | None, modules, what: str = "the model", copies: float = 1.0) -> None:
    """Refuse, before the work, to start a run whose output `path` (a model holding `modules`' tensors, float32,
    times `copies`) will not fit on its disk. None: nothing to check."""
    from ganedit.store.atomic import check_free_space

    if path is None:
        return
    tensors = [t for module in modules if module is not None for t in module.state_dict().values()]
    needed = int(copies * sum(4 * t.numel() if t.is_floating_point() else t.numel() * t.element_size()
                             for t in tensors))  # fmt: skip
    check_free_space(path, needed, what)


def check_writable_folder(folder: Path, option: str) -> None:
    """An output folder (`option` names it): an existing one must be writable, a new one creatable (its nearest
    existing parent a writable folder). Checked before any work."""
    from ganedit.store.atomic import check_output_folder

    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise GaneditError(f"{option} {folder}: {existing} is a file, not a folder; give a folder")
    check_output_folder(existing)


def _same_file_key(path):
    """A key equal for two paths naming one file: its device and inode where it exists (symlinks and hard
    links included), else its resolved path."""
    path = Path(path).expanduser()
    if path.exists():
        status = path.stat()
        return (status.st_dev, status.st_ino)
    return str(path.resolve())


def add_plain_row(table, *cells: object) -> None:
    """A table row shown as written: values such as "[False, 4, 4]" are not rich markup."""
    from rich.text import Text

    table.add_row(*(Text(str(cell)) for cell in cells))


def lap(stage: str) -> None:
    """Close the running command's current stage as `stage`: the wall time since the previous lap (or since the
    command started) is added to it. The report's `seconds` (stage_seconds) and its printed time line use it."""
    now = time.perf_counter()
    _RUN.seconds[stage] = _RUN.seconds.get(stage, 0.0) + now - _RUN.last_lap
    _RUN.last_lap = now


def stage_seconds() -> dict[str, float]:
    """The command's stages so far, in seconds, in order, with `total` (since the command started: from the
    console script, `start` is its imports; in-process calls of main() count from the call)."""
    return {**{stage: round(seconds, 2) for stage, seconds in _RUN.seconds.items()},
            "total": round(time.perf_counter() - _RUN.first_lap, 2)}  # fmt: skip


def timing_line(seconds: dict[str, float]) -> str:
    """`time: load 1.2 s, edit 20.3 s, evaluate 4.1 s, write 0.3 s; total 26.0 s`."""
    stages = ", ".join(f"{stage} {value:.1f} s" for stage, value in seconds.items() if stage != "total")
    return f"time: {stages}; total {seconds['total']:.1f} s"


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
        self.first_lap = self.last_lap = time.perf_counter()
        self.seconds: dict[str, float] = {}
        self.cleanup = contextlib.ExitStack()


_RUN = _RunState()


def main(argv: list[str] | None = None, started: float | None = None) -> int:
    """Entry point: run the command and turn every failure into a one-line message and an exit code.

    started: the time.perf_counter() at which the process began importing ganedit (the console script
    gives it), so that the report's `start` stage and total count the imports too."""
    global _RUN
    args = list(sys.argv[1:] if argv is None else argv)
    options = args[: args.index("--")] if "--" in args else args
    previous, _RUN = _RUN, _RunState()
    console, was_quiet = stderr_console(), stderr_console().quiet  # --quiet lasts for this call only
    if started is not None:
        _RUN.first_lap = _RUN.last_lap = started
        lap("start")
    try:
        with _RUN.cleanup, _sigterm_raises(), _stdout_to_stderr("--json" in options) as documents:
            _RUN.json_documents = documents
            return _run(args)
    finally:
        _RUN = previous
        console.quiet = was_quiet


def _run(args: list[str]) -> int:
    from ganedit.store.atomic import output_journal

    try:
        with output_journal(keep_on=(GateMissed,)):  # a failed command's outputs are removed again
            cli.main(args=args, prog_name="ganedit", standalone_mode=False)
        return EXIT_OK
    except GaneditError as error:
        from ganedit.engine.distributed import MainProcessFailed, training_together

        _error(str(error), shared=isinstance(error, MainProcessFailed) or not training_together())
        return error.exit_code
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.UsageError as error:  # one line, as every bad input
        hint = f" (see `{error.ctx.command_path} --help`)" if error.ctx is not None else ""
        _error(error.format_message() + hint, shared=True)
        return EXIT_BAD_INPUT
    except click.ClickException as error:
        _error(error.format_message(), shared=True)
        return error.exit_code
    except (click.Abort, KeyboardInterrupt) as error:  # click turns KeyboardInterrupt into Abort from it
        terminated = isinstance(error, Terminated) or isinstance(error.__cause__, Terminated)
        _error(_interrupt_message("terminated (SIGTERM)" if terminated else "interrupted"), shared=True)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    except torch.OutOfMemoryError as error:
        _error(_out_of_memory_message(error))
        return EXIT_OUT_OF_MEMORY
    except OSError as error:  # the machine's: no space, read-only, permission (else a bug, below)
        from ganedit.store.atomic import machine_error

        machine = machine_error(error)
        if machine is None:
            return _internal_error(error)
        _error(str(machine))
        return EXIT_BAD_INPUT
    except Exception as error:  # anything else is ganedit's bug, not the user's
        if isinstance(error, RuntimeError) and "out of memory" in str(error) and "CUDA" in str(error):
            _error(_out_of_memory_message(error))  # some CUDA libraries report it as a plain RuntimeError
            return EXIT_OUT_OF_MEMORY
        if _peer_stopped(error):
            _error("another process of this torchrun run stopped, so this one cannot go on (that process's "
                   f"message says why): {str(error).splitlines()[0][:160]}")  # fmt: skip
            return EXIT_INTERNAL
        return _internal_error(error)


def _peer_stopped(error: Exception) -> bool:
    """A collective of a run of several processes failed because another process is gone."""
    from ganedit.engine import distributed

    if not distributed.active():
        return False
    text = str(error)
    return isinstance(error, torch.distributed.DistError) or "closed by peer" in text or "reset by peer" in text


def _internal_error(error: Exception) -> int:
    if os.environ.get("GANEDIT_DEBUG") == "1":
        raise error
    _error(
        f"internal error: {type(error).__name__}: {error} (rerun with GANEDIT_DEBUG=1 for the traceback and report it)"
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


def _error(message: str, shared: bool = False) -> None:
    """The one line of every error: a message that carries a library's multi-line text is joined onto one.

    In a run of several processes (torchrun) rank 0 speaks for all: a `shared` error (what every process
    meets alike: bad input before training, an interrupt, rank 0's own failure passed on) is printed by rank 0
    alone; any other is printed by the process that met it, which names itself."""
    from ganedit.engine.distributed import launched_rank

    rank = launched_rank()
    if rank > 0 and shared:
        return
    line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    click.echo(f"ganedit: error: {'' if rank == 0 else f'process {rank}: '}{line}", err=True)


def run() -> None:
    sys.exit(main())
