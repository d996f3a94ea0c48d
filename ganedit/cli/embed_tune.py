"""`ganedit embed-tune` and `apply-patch`: the command line of ganedit.procedures.embed_tune."""

from dataclasses import dataclass
from pathlib import Path

import click
import torch

import ganedit
from ganedit.cli.console import stdout_console
from ganedit.cli.gates import EditChecks
from ganedit.cli.main import (
    CONTEXT,
    add_plain_row,
    apply_common,
    check_room,
    check_writable,
    cli,
    common_options,
    emit_json,
    lap,
    stage_seconds,
    timing_line,
)
from ganedit.cli.recipe import (
    CARD_HELP,
    check_card,
    editing_command,
    model_output_grid,
    require,
    resolve,
    write_card_of,
)
from ganedit.errors import GaneditError
from ganedit.procedures.embed_tune import EmbedTuneSettings
from ganedit.settings import setting

DEFAULT_LPIPS = "lpips-alex"  # LPIPS on AlexNet, the LPIPS authors' default
PERCEPTUAL_CHOICES = ("lpips-alex", "lpips-vgg", "toy", "off")


@dataclass
class EmbedTuneRun:
    """What `ganedit embed-tune` runs on and writes (a recipe's top-level keys)."""

    model: str | None = setting(None, "The BigGAN-deep model (path or zoo name).", option=False)
    classes: list[str] = setting([], "Judge label to tune for (repeatable); names match ignoring case, spaces and "
                                 "underscores.", aliases=("--class",), metavar="NAME_OR_INDEX")  # fmt: skip
    output: str | None = setting(None, "The edited model (.safetensors), or with --patch only the tuned embeddings.",
                                 aliases=("-o",), metavar="FILE")  # fmt: skip
    judge: list[str] = setting([], "The judge (repeatable: an ensemble); see below.", aliases=("--classifier",),
                               metavar="SPEC")  # fmt: skip
    labels: str | None = setting(None, "Labels file of a local judge: one label per line, in output order.",
                                 metavar="FILE")  # fmt: skip
    patch: bool = setting(False, "Write only the tuned embeddings (a small patch file) to -o.")
    card: bool = setting(False, CARD_HELP)
    grid: str | None = setting(None, "PNG of before / after samples, two rows per class, same latents.",
                               metavar="FILE")  # fmt: skip
    lpips: str | None = setting(None, "Distance of the report's mean pairwise diversity on held-out latents "
                                f"(default: toy with the toy judge, else {DEFAULT_LPIPS}; off: none).",
                                choices=PERCEPTUAL_CHOICES)  # fmt: skip


@cli.command(
    "embed-tune",
    context_settings=CONTEXT,
    epilog="""\b
MODEL defaults to the command's packaged recipe (ganedit/data/recipes/embed-tune.toml): the embedded
toy BigGAN-deep, judged by the toy oracle.

\b
Examples:
  ganedit embed-tune --class heart -o heart.safetensors          # re-purpose the toy model to a new class
  ganedit embed-tune --class star --init target --diversity features --diversity-weight 5 -o star.safetensors
  ganedit embed-tune biggan-deep-256 --class daisy -o daisy.safetensors
  ganedit embed-tune biggan-deep-256 --class daisy --class 'tiger shark' --judge alexnet \\
      --judge resnet50 --init target -o repaired.safetensors --grid before_after.png
  ganedit embed-tune biggan-deep-256 --class 'hotel room' --judge places365-resnet18 \\
      --init top -o hotel_room.patch.safetensors --patch
  ganedit embed-tune model.safetensors --class 3 --judge resnet18=my.safetensors --labels my.txt -o out.safetensors

\b
--judge SPEC (repeat for an ensemble, the mean of their log-softmax; --classifier is an alias):
  resnet50, alexnet, vit_b_16, ...   torchvision ImageNet classifiers (resnet50:IMAGENET1K_V2 names weights)
  places365-resnet18 (-resnet50, -alexnet, -densenet161)   Places365 scene classifiers
  ARCH=PATH with --labels FILE       a local torchvision-architecture state dict, one label per line
  toy                                the toy world's shape oracle
Default: resnet50 for a 1000-class model.
Weights download once into $TORCH_HOME/hub/checkpoints.

\b
--diversity (off by default, as the reference): softmax or features of the judge, alexnet-conv5 (AlexNet
conv5 features with ImageNet weights, whatever the judge), pixels; --diversity-weight is alpha.
--lpips: the report's mean pairwise diversity, LPIPS (lpips-alex) by default, toy with the toy judge.

\b
--class is a label of the classifier; a label the model has (by name, or the same index when the model's
classes are the classifier's) is replaced, one it lacks becomes a new class appended to the model.""",
)
@click.argument("model", required=False)
@editing_command("embed-tune", EmbedTuneRun, EmbedTuneSettings, resumable=False)
def embed_tune_command(model, recipe_file, as_json, device, quiet, offline, allow_nonfinite, **options):
    """Fine-tune BigGAN class embeddings so a classifier sees the class (repair or re-purpose a class)."""
    from ganedit.cli.console import TrainingProgress
    from ganedit.generators.formats import resolve_model_path
    from ganedit.judges import load_judges, resolve_label
    from ganedit.procedures import embed_tune as et
    from ganedit.store.provenance import parent_record

    torch_device = apply_common(device, quiet, offline, allow_nonfinite)
    resolved = resolve("embed-tune", EmbedTuneRun, EmbedTuneSettings, {**options, "model": model}, recipe_file)
    run, settings = resolved.run, resolved.settings
    classes = require(run.classes, "say which class to tune: --class NAME (repeatable), or `classes` in the recipe")
    model, output, grid = model_output_grid(run)
    model_path = resolve_model_path(model)
    bundle = ganedit.load_model(model_path, device=torch_device)
    bundle.source = str(model)
    if bundle.generator.arch != "biggan-deep":
        raise GaneditError(
            f"{model} is a {bundle.generator.arch} model; embed-tune needs a BigGAN-deep model (class embeddings)"
        )
    check_room(output, [bundle.generator])
    checks = EditChecks(options, torch_device, bundle.generator)
    judge = load_judges(run.judge or [default_judge(bundle)], run.labels, torch_device)
    targets = [resolve_label(judge, name) for name in classes]
    perceptual, perceptual_note = load_report_perceptual(run.lpips, judge, torch_device)

    lap("prepare")
    with TrainingProgress(quiet=quiet) as bar:
        description = f"embed-tune on {torch_device}: {len(targets)} class(es) x {settings.starts} starts"
        task = bar.task(description, total=None)
        result = et.embed_tune(bundle.generator, judge, targets, settings, class_names=bundle.class_names,
                               perceptual=perceptual,
                               progress=lambda done, total: bar.update(task, done, total=total))  # fmt: skip
    lap("edit and evaluate")  # embed-tune scores the held-out latents as part of its rounds
    parents = [parent_record(str(model), model_path, bundle)]
    (et.save_patch if run.patch else et.save_model)(result, output, parents, resolved.recipe)
    if grid is not None:
        et.save_before_after_grid(result, grid)
    card = write_card_of(run.card, output)
    lap("write")
    report = {
        "model": str(model),
        "judge": judge.name,
        "output": str(output),
        "written": [str(output)] + ([str(grid)] if grid else []) + card,
        "kind": "patch" if run.patch else "model",
        "grid": str(grid) if grid else None,
        "parameters": result.parameters,
        "held_out_latents": settings.holdout,
        "perceptual_distance": result.perceptual,  # the distance of each class's mean_pairwise_perceptual
        "perceptual_note": perceptual_note,  # why there is none, when there is none
        "classes": result.summary(),
    }
    columns = torch.tensor(result.columns)  # --fid-against: the tuned classes in turn
    checks.add_fid(report, {"tuned": result.generator}, settings.seed,
                   lambda n: columns[torch.arange(n) % len(columns)])  # fmt: skip
    if checks.folder is not None:
        lap("evaluate")  # FID against --fid-against
    report["seconds"] = stage_seconds()
    if as_json:
        emit_json(report)
        checks.finish(report, as_json)
        return
    from rich.table import Table

    table = Table(title=f"embed-tune with {judge.name} ({settings.holdout} held-out latents)")
    for column in ("class / measure", "before", "after"):
        table.add_column(column)
    measures = [
        ("target probability", "probability", "{:.3f}"),
        ("accuracy", "accuracy", "{:.2f}"),
        ("judge-feature diversity", "diversity", "{:.3f}"),
    ]
    if result.perceptual is not None:
        measures.append((f"mean pairwise {perceptual_label(result.perceptual)}", "mean_pairwise_perceptual", "{:.4f}"))
    for row in result.reports:
        where = f"{row.column} (new)" if row.new else str(row.column)
        add_plain_row(table, f"{row.label} [{row.label_index}] -> model class {where}", "", "")
        for name, field, shown in measures:
            before, after = getattr(row.before, field), getattr(row.after, field)
            add_plain_row(table, f"  {name}", shown.format(before), shown.format(after))
    stdout_console().print(table)
    if perceptual_note is not None and run.lpips != "off":
        stdout_console().print(perceptual_note, markup=False, highlight=False)
    stdout_console().print(f"wrote {output} ({report['kind']})" + (f" and {grid}" if grid else ""))
    stdout_console().print(timing_line(report["seconds"]))
    checks.finish(report, as_json)


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
@click.option("--card", is_flag=True, help=CARD_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@common_options
def apply_patch_command(patch_file, model, output, card, as_json, device, quiet, offline, allow_nonfinite):
    """Apply an embed-tune patch (the tuned embeddings only) to the base model it was made from."""
    from ganedit.generators.formats import resolve_model_path
    from ganedit.procedures import embed_tune as et
    from ganedit.store.provenance import make_provenance, parent_record

    apply_common(device, quiet, offline, allow_nonfinite)
    if not patch_file.is_file():
        raise GaneditError(f"{patch_file}: no such patch file; check the path")
    model_path = resolve_model_path(model)
    check_writable(output, inputs=[patch_file, model_path])
    check_card(card, output)
    bundle = ganedit.load_model(model_path)
    check_room(output, [bundle.generator])
    generator, class_names = et.apply_patch(bundle.generator, patch_file, bundle.class_names)
    _, columns, info = et.read_patch(patch_file)
    provenance = make_provenance(
        "embed-tune",
        {**info["provenance"].get("parameters", {}), "applied_from_patch": str(patch_file)},
        [parent_record(str(model), model_path, bundle), parent_record(str(patch_file), patch_file)],
        seed=info["provenance"].get("seed"),
        evaluation=info["provenance"].get("evaluation"),
    )
    ganedit.save_checkpoint(output, generator, None, class_names, provenance)
    report = {"patch": str(patch_file), "model": str(model), "columns": columns, "output": str(output),
              "written": [str(output)] + write_card_of(card, output)}  # fmt: skip
    if as_json:
        emit_json(report)
    else:
        stdout_console().print(f"wrote {output} ({len(columns)} class embedding(s) from {patch_file})")


def load_report_perceptual(spec: str | None, judge, device) -> tuple[object | None, str | None]:
    """The perceptual distance of the report's mean pairwise diversity, and a note when there is none.

    spec None: the toy distance for a toy judge, else LPIPS (AlexNet); when that default cannot be
    loaded (offline, weights missing) the run goes on without it and the note, shown with the report,
    says why. A distance asked for by name must load.
    """
    from ganedit.judges.perceptual import load_perceptual

    if spec == "off":
        return None, "--lpips off"
    name = spec or ("toy" if judge.name.startswith("toy-oracle") else DEFAULT_LPIPS)
    try:
        return load_perceptual(name, device), None
    except GaneditError as error:
        if spec is not None:
            raise
        return None, f"no mean pairwise LPIPS in the report: {error}"


def perceptual_label(name: str) -> str:
    """How a perceptual distance is named in the table: "LPIPS (lpips-alex)", "toy perceptual distance"."""
    return f"LPIPS ({name})" if name.startswith("lpips") else "toy perceptual distance"


def default_judge(bundle) -> str:
    """The judge a 1000-class (ImageNet) model is meant for: ResNet-50; other models must name theirs."""
    if bundle.generator.config.num_classes == 1000:
        return "resnet50"
    raise GaneditError(
        f"{bundle.source} has {bundle.generator.config.num_classes} classes: choose the judge with --judge "
        "(see `ganedit embed-tune --help`)"
    )
