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
    add_plain_row(table, "source", report["source"])
    add_plain_row(table, "format", report["format"])
    add_plain_row(table, "architecture", report["architecture"])
    add_plain_row(table, "resolution", f"{report['resolution']} px")
    names = report["class_names"]
    classes = str(report["classes"]) if report["classes"] else "unconditional"
    if names:
        shown = ", ".join(names[:8]) + (f", ... ({len(names) - 8} more)" if len(names) > 8 else "")
        classes += f": {shown}"
    add_plain_row(table, "classes", classes)
    add_plain_row(table, "generator", f"{report['generator']['parameters']:,} parameters")
    add_plain_row(table, "  config", json.dumps(report["generator"]["config"]))
    if report["discriminator"]:
        add_plain_row(table, "discriminator", f"{report['discriminator']['parameters']:,} parameters")
        add_plain_row(table, "  config", json.dumps(report["discriminator"]["config"]))
    else:
        add_plain_row(table, "discriminator", "none")
    for key, value in report["metadata"].items():
        add_plain_row(table, key, json.dumps(value, default=str) if not isinstance(value, str) else value)
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
    short_hash = {
        "published sha256": "published",
        "pinned at first download": "pinned",
        "to be pinned at first download": "on first use",
        "shipped with ganedit": "shipped",
    }
    for column in ("name", "px", "classes", "size", "licence", "sha256", "cached"):
        table.add_column(column, no_wrap=column != "licence", min_width=10 if column == "licence" else None)
    for row in rows:
        add_plain_row(
            table,
            row["name"],
            row["resolution"],
            row["classes"] or "-",
            f"{row['size_mb']:g} MB" if row["size_mb"] else "?",
            row["licence"].split(" (")[0],
            short_hash[row["hash"]],
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


from ganedit.embed_tune import BOUNDS as BOUNDS_CHOICES  # noqa: E402
from ganedit.embed_tune import DIVERSITY_SPACES as DIVERSITY_CHOICES  # noqa: E402
from ganedit.embed_tune import INIT_STRATEGIES as INIT_CHOICES  # noqa: E402


@cli.command(
    "embed-tune",
    context_settings=CONTEXT,
    epilog="""\b
MODEL defaults to the embedded toy model (toy-biggan), judged by the toy oracle.

\b
Examples:
  ganedit embed-tune --class heart -o heart.safetensors          # re-purpose the toy model to a new class
  ganedit embed-tune --class star --init target --diversity features -o star.safetensors   # repair a class
  ganedit embed-tune biggan-deep-256 --class daisy -o daisy.safetensors
  ganedit embed-tune biggan-deep-256 --class daisy --class 'tiger shark' --classifier alexnet \\
      --classifier resnet50 --init target -o repaired.safetensors --grid before_after.png
  ganedit embed-tune biggan-deep-256 --class 'hotel room' --classifier places365-resnet18 \\
      --init top -o hotel_room.patch.safetensors --patch
  ganedit embed-tune model.safetensors --class 3 --classifier resnet18=my.safetensors --labels my.txt -o out.safetensors

\b
--classifier SPEC (repeat for an ensemble, the mean of their log-softmax):
  resnet50, alexnet, vit_b_16, ...   torchvision ImageNet classifiers (resnet50:IMAGENET1K_V2 names weights)
  places365-resnet18 (-resnet50, -alexnet, -densenet161)   Places365 scene classifiers
  ARCH=PATH with --labels FILE       a local torchvision-architecture state dict, one label per line
  toy                                the toy world's shape oracle
Default: toy for a model whose classes are toy shapes, resnet50 for a 1000-class model.
Weights download once into $TORCH_HOME/hub/checkpoints.

\b
--class is a label of the classifier; a label the model has (by name, or the same index when the model's
classes are the classifier's) is replaced, one it lacks becomes a new class appended to the model.""",
)
@click.argument("model", default="toy-biggan")
@click.option(
    "--class",
    "classes",
    multiple=True,
    required=True,
    metavar="NAME_OR_INDEX",
    help="Classifier label to tune for (repeatable); names match ignoring case, spaces and underscores.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The edited model (.safetensors), or with --patch only the tuned embeddings.",
)
@click.option("--classifier", "classifiers", multiple=True, metavar="SPEC", help="The judge (repeatable); see below.")
@click.option(
    "--labels",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Labels file for a local classifier file: one label per line, in output order.",
)
@click.option(
    "--init",
    default="mean",
    show_default=True,
    type=click.Choice(INIT_CHOICES),
    help="Starting embeddings: table mean + noise, the judge's top classes, random rows, the target's row.",
)
@click.option("--starts", default=3, show_default=True, type=click.IntRange(1), help="Starts per class (best kept).")
@click.option("--rounds", default=10, show_default=True, type=click.IntRange(1), help="Fresh latent batches.")
@click.option("--steps", default=20, show_default=True, type=click.IntRange(1), help="Adam steps per latent batch.")
@click.option("--batch-size", default=10, show_default=True, type=click.IntRange(2), help="Latents per start per step.")
@click.option(
    "--lr", default=0.1, show_default=True, type=click.FloatRange(0, min_open=True), help="Adam learning rate."
)
@click.option(
    "--weight-decay",
    default=0.9,
    show_default=True,
    type=click.FloatRange(0),
    help="Adam weight decay (L2 pull of the embedding towards 0).",
)
@click.option(
    "--diversity",
    default="softmax",
    show_default=True,
    type=click.Choice(DIVERSITY_CHOICES),
    help="Space of the mode-seeking diversity term.",
)
@click.option(
    "--diversity-weight",
    default=0.1,
    show_default=True,
    type=click.FloatRange(0),
    help="alpha in L = L_CE - alpha * L_div (0 turns it off).",
)
@click.option(
    "--bounds",
    default="per-dimension",
    show_default=True,
    type=click.Choice(BOUNDS_CHOICES),
    help="Clamp box from the model's embedding table: per dimension, or its global min/max.",
)
@click.option(
    "--truncation",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True),
    help="BigGAN truncation t for tuning and evaluation.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same result.")
@click.option(
    "--holdout",
    default=32,
    show_default=True,
    type=click.IntRange(2),
    help="Held-out latents that choose the best start and score before/after.",
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16"]),
    default="fp32",
    show_default=True,
    help="bf16: generator and judge under bf16 autocast (for GPUs); embeddings and Adam stay fp32.",
)
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the step (pays off on a GPU over many steps).")
@click.option(
    "--starts-per-batch",
    type=click.IntRange(1),
    default=None,
    help="Optimise at most this many starts at once (default: all classes x starts in one batch).",
)
@click.option("--patch", is_flag=True, help="Write only the tuned embeddings (a small patch file) to -o.")
@click.option(
    "--grid",
    type=click.Path(dir_okay=False, path_type=Path),
    help="PNG of before/after samples, two rows per class, same latents.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON document.")
@common_options
def embed_tune_command(
    model,
    classes,
    output,
    classifiers,
    labels,
    init,
    starts,
    rounds,
    steps,
    batch_size,
    lr,
    weight_decay,
    diversity,
    diversity_weight,
    bounds,
    truncation,
    seed,
    holdout,
    precision,
    compile_,
    starts_per_batch,
    patch,
    grid,
    as_json,
    device,
    quiet,
    offline,
):
    """Fine-tune BigGAN class embeddings so a classifier sees the class (repair or re-purpose a class)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from ganedit import embed_tune as et
    from ganedit.formats import resolve_model_path
    from ganedit.judges import load_judges, resolve_label
    from ganedit.provenance import parent_record

    torch_device = apply_common(device, quiet, offline)
    check_writable(output, grid)
    model_path = resolve_model_path(model)
    bundle = ganedit.load_model(model_path, device=torch_device)
    bundle.source = str(model)
    if bundle.generator.arch != "biggan-deep":
        raise GaneditError(
            f"{model} is a {bundle.generator.arch} model; embed-tune needs a BigGAN-deep model (class embeddings)"
        )
    if not classifiers:
        classifiers = (default_judge(bundle),)
    judge = load_judges(list(classifiers), labels, torch_device)
    targets = [resolve_label(judge, name) for name in classes]

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr_console(),
        transient=True,
    ) as bar:
        task = bar.add_task(f"embed-tune on {torch_device}: {len(targets)} class(es) x {starts} starts", total=None)
        result = et.embed_tune(
            bundle.generator,
            judge,
            targets,
            class_names=bundle.class_names,
            init=init,
            starts=starts,
            rounds=rounds,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            diversity=diversity,
            diversity_weight=diversity_weight,
            truncation=truncation,
            bounds=bounds,
            seed=seed,
            holdout=holdout,
            precision=precision,
            compile=compile_,
            starts_per_batch=starts_per_batch,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    parents = [parent_record(str(model), model_path)]
    (et.save_patch if patch else et.save_model)(result, output, parents)
    if grid is not None:
        et.save_before_after_grid(result, grid)
    report = {
        "model": str(model),
        "classifier": judge.name,
        "written": str(output),
        "kind": "patch" if patch else "model",
        "grid": str(grid) if grid else None,
        "parameters": result.parameters,
        "classes": result.summary(),
    }
    if as_json:
        emit_json(report)
        return
    from rich.table import Table

    table = Table(title=f"embed-tune with {judge.name} ({holdout} held-out latents)")
    for column in ("class", "model class", "target prob.", "accuracy", "diversity"):
        table.add_column(column)
    for row in result.reports:
        where = f"{row.column} (new)" if row.new else str(row.column)
        add_plain_row(
            table,
            f"{row.label} [{row.label_index}]",
            where,
            f"{row.before.probability:.3f} -> {row.after.probability:.3f}",
            f"{row.before.accuracy:.2f} -> {row.after.accuracy:.2f}",
            f"{row.before.diversity:.3f} -> {row.after.diversity:.3f}",
        )
    stdout_console().print(table)
    stdout_console().print(f"wrote {output} ({report['kind']})" + (f" and {grid}" if grid else ""))


@cli.command(
    "apply-patch",
    context_settings=CONTEXT,
    epilog="""\b
Examples:
  ganedit embed-tune --class heart --patch -o heart.patch.safetensors
  ganedit apply-patch heart.patch.safetensors toy-biggan -o toy-with-heart.safetensors""",
)
@click.argument("patch_file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("model")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Model to write.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@common_options
def apply_patch_command(patch_file, model, output, as_json, device, quiet, offline):
    """Apply an embed-tune patch (the tuned embeddings only) to the base model it was made from."""
    from ganedit import embed_tune as et
    from ganedit.formats import resolve_model_path
    from ganedit.provenance import make_provenance, parent_record

    apply_common(device, quiet, offline)
    if not patch_file.is_file():
        raise GaneditError(f"{patch_file}: no such patch file; check the path")
    model_path = resolve_model_path(model)
    bundle = ganedit.load_model(model_path)
    generator, class_names = et.apply_patch(bundle.generator, patch_file, bundle.class_names)
    _, columns, info = et.read_patch(patch_file)
    provenance = make_provenance(
        "embed-tune",
        {**info["provenance"].get("parameters", {}), "applied_from_patch": str(patch_file)},
        [parent_record(str(model), model_path), parent_record(str(patch_file), patch_file)],
        seed=info["provenance"].get("seed"),
        evaluation=info["provenance"].get("evaluation"),
    )
    ganedit.save_checkpoint(output, generator, None, class_names, provenance)
    report = {"patch": str(patch_file), "model": str(model), "columns": columns, "written": str(output)}
    if as_json:
        emit_json(report)
    else:
        stdout_console().print(f"wrote {output} ({len(columns)} class embedding(s) from {patch_file})")


def default_judge(bundle) -> str:
    """The judge a model is meant for: the toy oracle for toy-shape classes, ResNet-50 for ImageNet's 1000."""
    from ganedit.toy.world import SHAPES

    if bundle.class_names and set(bundle.class_names) <= set(SHAPES):
        return "toy"
    if bundle.generator.config.num_classes == 1000:
        return "resnet50"
    raise GaneditError(
        f"{bundle.source} has {bundle.generator.config.num_classes} classes: choose the judge with --classifier "
        "(see `ganedit embed-tune --help`)"
    )


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


from ganedit import cli_merge  # noqa: E402, F401, I001  (registers `ganedit merge`)
from ganedit import cli_unlearn  # noqa: E402, F401, I001  (registers `ganedit unlearn`)
from ganedit import cli_text_unlearn  # noqa: E402, F401, I001  (registers `ganedit text-unlearn`)
