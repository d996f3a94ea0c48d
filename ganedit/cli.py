"""The `ganedit` command line: parse, load, call the Python API, report.

Progress and messages go to stderr, results to stdout (`--json` makes stdout one JSON document).
Exit codes: 0 success; 2 bad input or usage (one-line error, no traceback); 1 unexpected internal
error; 130 interrupted.
"""

import json
import math
import os
import sys
from pathlib import Path

import click
import torch

import ganedit
from ganedit import sampling, zoo
from ganedit.console import stderr_console, stdout_console
from ganedit.errors import GaneditError
from ganedit.models import config_dict

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
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
    if offline:
        os.environ["GANEDIT_OFFLINE"] = "1"
    return resolve_device(device)


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


def describe(bundle) -> dict:
    """Everything `ganedit info` reports about a loaded model."""
    generator, discriminator = bundle.generator, bundle.discriminator
    count = sampling.num_classes(generator)
    return {
        "source": bundle.source,
        "format": bundle.format,
        "architecture": generator.arch,
        "resolution": sampling.resolution(generator),
        "classes": count,
        "class_names": bundle.class_names,
        "generator": {
            "parameters": sum(p.numel() for p in generator.parameters()),
            "config": config_dict(generator),
        },
        "discriminator": None
        if discriminator is None
        else {
            "architecture": discriminator.arch,
            "parameters": sum(p.numel() for p in discriminator.parameters()),
            "config": config_dict(discriminator),
        },
        "metadata": bundle.metadata,
    }


@cli.command(
    context_settings=CONTEXT,
    epilog="""\b
Examples:
  ganedit info biggan-deep-256
  ganedit info ffhq.pkl --json | jq .generator.config
  ganedit info edited.safetensors      # shows the provenance of a ganedit file""",
)
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@common_options
def info(model, as_json, device, quiet, offline):
    """Show a model's format, architecture, config, size, classes and provenance."""
    apply_common(device, quiet, offline)
    report = describe(ganedit.load_model(model))
    if as_json:
        emit_json(report)
        return
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("source", report["source"])
    table.add_row("format", report["format"])
    table.add_row("architecture", report["architecture"])
    table.add_row("resolution", f"{report['resolution']} px")
    names = report["class_names"]
    classes = str(report["classes"]) if report["classes"] else "unconditional"
    if names:
        shown = ", ".join(names[:8]) + (f", ... ({len(names) - 8} more)" if len(names) > 8 else "")
        classes += f": {shown}"
    table.add_row("classes", classes)
    table.add_row("generator", f"{report['generator']['parameters']:,} parameters")
    table.add_row("  config", json.dumps(report["generator"]["config"]))
    if report["discriminator"]:
        table.add_row("discriminator", f"{report['discriminator']['parameters']:,} parameters")
        table.add_row("  config", json.dumps(report["discriminator"]["config"]))
    else:
        table.add_row("discriminator", "none")
    for key, value in report["metadata"].items():
        table.add_row(key, json.dumps(value, default=str) if not isinstance(value, str) else value)
    stdout_console().print(table)


@cli.command(
    context_settings=CONTEXT,
    epilog="""\b
Examples:
  ganedit sample biggan-deep-256 --class daisy --class 'tiger shark' -n 8 -o grid.png
  ganedit sample ffhq.pkl -n 16 --seed 1 --truncation 0.7 -o faces.png
  ganedit sample edited.safetensors --class 3 -n 4 --out-dir samples/""",
)
@click.argument("model")
@click.option(
    "--class",
    "classes",
    multiple=True,
    metavar="NAME_OR_INDEX",
    help="Class to sample (repeatable); names match case-insensitively. Default: classes drawn from the seed.",
)
@click.option(
    "-n",
    "--num",
    "count",
    default=8,
    show_default=True,
    type=click.IntRange(1, 10000),
    help="Samples per class (unconditional: in all).",
)
@click.option(
    "--seed", default=0, show_default=True, type=int, help="Same seed, same latents and images, on any device."
)
@click.option(
    "--truncation",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True),
    help="BigGAN truncation t / StyleGAN2 psi.",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write one PNG grid (one row per class)."
)
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), help="Write one PNG per sample.")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1), help="Images generated at once.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@common_options
def sample(model, classes, count, seed, truncation, output, out_dir, batch_size, as_json, device, quiet, offline):
    """Generate images from a model with a fixed seed."""
    if output is None and out_dir is None:
        raise click.UsageError("say where to write: -o grid.png and/or --out-dir DIR")
    torch_device = apply_common(device, quiet, offline)
    bundle = ganedit.load_model(model, device=torch_device)
    generator = bundle.generator
    total_classes = sampling.num_classes(generator)
    if classes:
        indices = sampling.resolve_classes(list(classes), bundle.class_names, total_classes)
    elif total_classes:
        indices = torch.randint(total_classes, (1,), generator=torch.Generator().manual_seed(seed)).tolist()
    else:
        indices = [None]
    per_row = count
    labels = torch.tensor([index for index in indices for _ in range(count)]) if total_classes else None
    z = sampling.sample_latents(generator, count * len(indices), seed, truncation)
    with stderr_console().status(f"generating {len(z)} images on {torch_device}"):
        images = sampling.generate(generator, z, labels, truncation, batch_size)
    written = []
    if output is not None:
        columns = per_row if total_classes else math.ceil(math.sqrt(count))
        sampling.save_grid(images, output, columns)
        written.append(str(output))
    if out_dir is not None:
        names = [
            f"{'unconditional' if index is None else f'class{index:04d}'}_seed{seed}_{i:04d}"
            for index in indices
            for i in range(count)
        ]
        written += [str(path) for path in sampling.save_each(images, out_dir, names)]
    report = {
        "model": str(model),
        "seed": seed,
        "truncation": truncation,
        "classes": [
            {"index": index, "name": bundle.class_names[index] if bundle.class_names else None}
            for index in indices
            if index is not None
        ],
        "images": len(images),
        "written": written,
    }
    if as_json:
        emit_json(report)
    else:
        shown = written if len(written) <= 3 else written[:2] + [f"... ({len(written) - 2} more)"]
        stdout_console().print(f"wrote {len(images)} images: {', '.join(shown)}")


@cli.command(
    context_settings=CONTEXT,
    epilog="""\b
Examples:
  ganedit convert biggan-deep-256 -o biggan-deep-256.safetensors
  ganedit convert network-snapshot.pkl -o ffhq.safetensors""",
)
@click.argument("model")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The .safetensors file to write.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@common_options
def convert(model, output, as_json, device, quiet, offline):
    """Convert any supported checkpoint to ganedit's own format (safetensors with provenance)."""
    from ganedit.formats import resolve_model_path
    from ganedit.provenance import make_provenance, parent_record

    apply_common(device, quiet, offline)
    path = resolve_model_path(model)
    bundle = ganedit.load_model(path)
    provenance = make_provenance("convert", {"source_format": bundle.format}, [parent_record(str(model), path)])
    ganedit.save_checkpoint(
        output, bundle.generator, bundle.discriminator, bundle.class_names, provenance, extra=bundle.metadata
    )
    report = {
        "source": str(model),
        "format": bundle.format,
        "written": str(output),
        "discriminator": bundle.discriminator is not None,
    }
    if as_json:
        emit_json(report)
    else:
        stdout_console().print(f"wrote {output} ({bundle.format} -> ganedit safetensors)")


@cli.group(context_settings=CONTEXT)
def zoo_group():
    """Named models: list the registry, download into the cache."""


cli.add_command(zoo_group, name="zoo")


@zoo_group.command(
    "list",
    context_settings=CONTEXT,
    epilog="""\b
Examples:
  ganedit zoo list
  ganedit zoo list --json | jq '.[] | select(.cached)'""",
)
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
def zoo_list(as_json):
    """Show every zoo model, its source, licence, hash policy and whether it is cached."""
    rows = []
    for model in zoo.REGISTRY.values():
        cached = zoo.cached_files(model)
        rows.append(
            {
                "name": model.name,
                "description": model.description,
                "architecture": model.architecture,
                "format": model.format,
                "resolution": model.resolution,
                "classes": model.classes,
                "licence": model.licence,
                "size_mb": model.size_mb,
                "files": [{"filename": f.filename, "urls": list(f.urls), "sha256": f.sha256} for f in model.files],
                "hash": zoo.hash_policy(model),
                "cached": all(cached.values()),
                "path": str(zoo.model_dir(model)),
            }
        )
    if as_json:
        emit_json(rows)
        return
    from rich.table import Table

    table = Table(title=f"ganedit zoo (cache: {zoo.cache_root()})")
    for column in ("name", "arch", "px", "classes", "size"):
        table.add_column(column, no_wrap=True)
    for column in ("licence", "hash", "cached"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"],
            row["architecture"],
            str(row["resolution"]),
            str(row["classes"] or "-"),
            f"{row['size_mb']:.0f} MB" if row["size_mb"] else "?",
            row["licence"],
            row["hash"],
            "yes" if row["cached"] else "no",
        )
    stdout_console().print(table)


@zoo_group.command(
    "download",
    context_settings=CONTEXT,
    epilog="""\b
Example:
  ganedit zoo download biggan-deep-256""",
)
@click.argument("name")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def zoo_download(name, quiet):
    """Download a zoo model into the cache (and pin its sha256 on first download)."""
    stderr_console().quiet = quiet
    path = zoo.resolve(name, offline=False)
    stdout_console().print(f"{name}: {path}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the command and turn every failure into a one-line message and an exit code."""
    try:
        cli.main(args=argv, prog_name="ganedit", standalone_mode=False)
        return EXIT_OK
    except GaneditError as error:
        _error(str(error))
        return EXIT_BAD_INPUT
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as error:
        error.show()
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
