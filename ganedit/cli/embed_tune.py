"""`ganedit embed-tune` and `apply-patch`: the command line of ganedit.procedures.embed_tune."""

from pathlib import Path

import click

import ganedit
from ganedit.cli.console import stderr_console, stdout_console
from ganedit.cli.main import CONTEXT, add_plain_row, apply_common, check_writable, cli, common_options, emit_json
from ganedit.errors import GaneditError
from ganedit.procedures.embed_tune import BOUNDS as BOUNDS_CHOICES  # noqa: E402
from ganedit.procedures.embed_tune import DIVERSITY_SPACES as DIVERSITY_CHOICES  # noqa: E402
from ganedit.procedures.embed_tune import INIT_STRATEGIES as INIT_CHOICES  # noqa: E402


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

    from ganedit.generators.formats import resolve_model_path
    from ganedit.judges import load_judges, resolve_label
    from ganedit.procedures import embed_tune as et
    from ganedit.store.provenance import parent_record

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
    from ganedit.generators.formats import resolve_model_path
    from ganedit.procedures import embed_tune as et
    from ganedit.store.provenance import make_provenance, parent_record

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
