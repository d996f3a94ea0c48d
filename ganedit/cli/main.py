"""The `ganedit` command line: parse, load, call the Python API, report.

Progress and messages go to stderr, results to stdout (`--json` makes stdout one JSON document).
Exit codes: 0 success; 2 bad input or usage (one-line error, no traceback); 1 unexpected internal
error; 130 interrupted.
"""

import json
import os
import sys

import click
import torch

import ganedit
from ganedit.cli.console import DownloadBar, stderr_console
from ganedit.errors import GaneditError
from ganedit.store import zoo

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_GATE_MISSED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


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


def emit_json(data: dict) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.group(
    context_settings=CONTEXT, epilog="Exit codes: 0 success, 2 bad input or usage, 1 internal error, 130 interrupted."
)
@click.version_option(ganedit.__version__, "--version", "-V", prog_name="ganedit")
def cli():
    """Edit pre-trained GANs without their training data.

    MODEL arguments are a path (a BigGAN-deep folder, a StyleGAN2 rosinality .pt or NVIDIA .pkl, a
    ganedit .safetensors) or a zoo name (see `ganedit zoo list`).
    """


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the command and turn every failure into a one-line message and an exit code."""
    try:
        cli.main(args=argv, prog_name="ganedit", standalone_mode=False)
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
    except (click.Abort, KeyboardInterrupt):
        _error("interrupted")
        return EXIT_INTERRUPTED
    except torch.OutOfMemoryError:
        _error("out of GPU memory; lower --batch-size or run with --device cpu")
        return EXIT_BAD_INPUT
    except Exception as error:  # anything else is ganedit's bug, not the user's
        if os.environ.get("GANEDIT_DEBUG") == "1":
            raise
        _error(
            f"internal error: {type(error).__name__}: {error} "
            "(rerun with GANEDIT_DEBUG=1 for the traceback and report it)"
        )
        return EXIT_INTERNAL


def _error(message: str) -> None:
    click.echo(f"ganedit: error: {message}", err=True)


def run() -> None:
    sys.exit(main())
