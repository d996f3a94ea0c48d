"""`ganedit merge`: the command line of ganedit.procedures.merge (GAN Cocktail)."""

from dataclasses import dataclass
from pathlib import Path

import click
import torch

import ganedit
from ganedit.cli.console import stderr_console, stdout_console
from ganedit.cli.gates import EditChecks
from ganedit.cli.main import (
    CONTEXT,
    add_plain_row,
    apply_common,
    check_room,
    check_writable,
    check_writable_folder,
    cli,
    emit_json,
    lap,
    lock_output,
    other_process,
    resume_file,
    stage_seconds,
    timing_line,
)
from ganedit.cli.recipe import CARD_HELP, check_card, editing_command, require, resolve, write_card_of
from ganedit.errors import GaneditError
from ganedit.procedures.merge import MergeSettings
from ganedit.settings import setting
from ganedit.store.atomic import make_folder


@dataclass
class MergeRun:
    """What `ganedit merge` runs on and writes (a recipe's top-level keys); the settings are MergeSettings."""

    models: list[str] = setting([], "The models to merge (paths or zoo names).", option=False)
    output: str | None = setting(None, "The merged model (.safetensors).", aliases=("-o",), metavar="FILE")
    names: list[str] = setting([], "Class name of each model, in order (repeatable; default: the models' names).",
                               aliases=("--name",))  # fmt: skip
    root: str | None = setting(None, "The root model: index or class name (default: the first).")
    parent_classes: list[int] = setting([], "Conditional parents: the class each gives (repeatable; default 0).",
                                        min=0, aliases=("--parent-class",))  # fmt: skip
    keep_rooted: str | None = setting(None, "Save the rooted models in this folder.", metavar="DIR")
    rooted: list[str] = setting([], "Reuse rooted models saved with --keep-rooted (repeatable; skips rooting).",
                                metavar="FILE")  # fmt: skip
    judge: str | None = setting(None, "Classifier for the report (per-class accuracy and FID vs each parent).",
                                metavar="SPEC")  # fmt: skip
    eval_samples: int = setting(1000, "Fixed latents per class in the report.", min=2)
    card: bool = setting(False, CARD_HELP)
    grid: str | None = setting(None, "PNG: per class, labelled rows parent, average (cocktail only: naive, or of the "
                               "rooted models), merged, on the same latents.", metavar="FILE")  # fmt: skip
    checkpoint_every: int = setting(100, "Write OUTPUT.resume every N steps (0 = only on Ctrl-C).", min=0)


@cli.command(
    "merge",
    context_settings=CONTEXT,
    epilog="""\b
MODELS default to the command's packaged recipe (ganedit/data/recipes/merge.toml): the two embedded toy
colour-domain models (toy-stylegan2-warm, toy-stylegan2-cool), judged by the toy oracle's colour head.
Class i of the merged model is MODELS[i], named by --name or the models' names.

\b
Examples:
  ganedit merge -o cocktail.safetensors                                  # the two toy colour domains
  ganedit merge cats.pkl dogs.pkl --name cats --name dogs -o pets.safetensors --judge resnet50
  ganedit merge a.pt b.pt c.pt --root 1 --proportion 1 --proportion 1 --proportion 2 -o abc.safetensors
  ganedit merge a.pt b.pt c.pt --rooted rooted/rooted-0.safetensors --rooted rooted/rooted-2.safetensors \\
      --root 1 -o abc.safetensors                                         # reuse rooted models
  ganedit merge --recipe recipes/merge-cocktail-128.toml --dry-run        # validate and print the plan
  ganedit merge a.pkl b.pkl --no-rooting -o naive.safetensors             # the naive-averaging baseline
  ganedit merge a.pkl b.pkl --method ewc --ewc-lambda 1e3 -o ewc.safetensors  # the paper's EWC baseline

\b
Merge rules (the root is the base, tau_i = theta_i - theta_root): mean (the paper's uniform average),
task-arithmetic (theta_root + sum w_i tau_i; --weight, default 1/N), ties (trim to --density, elect
signs, disjoint mean; --weight default 1), slerp (two models; --weight t, default 0.5).
--block-weight PREFIX=S scales the merged offset of the parameters starting with PREFIX (mapping,
synthesis.b64, D.b32, ...). A conditional parent gives its class --parent-class (default 0).
--method transfergan / ewc (the paper's baselines): no rooting, no averaging; the root's conditional copy
gets the union fine-tuning (--steps), ewc with the EWC penalty (--ewc-lambda, --fisher-samples).
A recipe (--recipe FILE, TOML) holds these options' values (models = ["a.pkl", "b.pkl"]), the settings
under [settings] (block_weights = {mapping = 0.5}); options given here override it.
The run checkpoints to OUTPUT.resume every --checkpoint-every steps and on Ctrl-C; --resume continues it.
Several processes (GPUs): torchrun --nproc-per-node N -m ganedit merge ... (--batch-size is per process;
rank 0 reports and writes; resume with the same N).""",
)
@click.argument("models", nargs=-1)
@editing_command("merge", MergeRun, MergeSettings)
@click.option("--dry-run", is_flag=True, help="Only validate, and print the plan.")
def merge_command(models, recipe_file, resume, dry_run, as_json, device, quiet, offline, allow_nonfinite, **options):
    """Merge N StyleGAN2 generators into one class-conditional model: GAN Cocktail."""
    torch_device = apply_common(device, quiet, offline, allow_nonfinite)
    options = {**options, "models": list(models)}
    resolved = resolve("merge", MergeRun, MergeSettings, options, recipe_file, model_key="models")
    run, settings = resolved.run, resolved.settings
    model_names = list(run.models)
    if len(model_names) < 2:
        raise GaneditError(f"merge needs at least two models, got {len(model_names)}; give two or more checkpoints")
    output = Path(run.output) if run.output else None
    if output is None and not dry_run:
        require(None, "say where to write the merged model: -o FILE (or `output` in the recipe)")
    grid = Path(run.grid) if run.grid else None
    check_writable(output, grid, inputs=[*model_names, *run.rooted])
    check_card(run.card, output)
    if not dry_run:
        checkpoint = resume_file(output.with_name(output.name + ".resume"))
        lock_output(output)
    if run.keep_rooted:
        check_writable_folder(Path(run.keep_rooted), "--keep-rooted")

    from ganedit.cli.console import TrainingProgress
    from ganedit.generators.formats import resolve_model_path
    from ganedit.procedures import merge as mg
    from ganedit.store.provenance import make_provenance, parent_record

    paths = [resolve_model_path(m) for m in model_names]
    bundles = [ganedit.load_model(path, device=torch_device) for path in paths]
    if not dry_run:
        check_room(output, [bundles[0].generator, bundles[0].discriminator], "the merged model")
    class_names = run.names or [_display_name(m) for m in model_names]
    if len(class_names) != len(model_names):
        raise GaneditError(f"{len(class_names)} names for {len(model_names)} models; give one name per model")
    sources = run.parent_classes or [None] * len(bundles)
    if len(sources) != len(bundles):
        raise GaneditError(f"{len(sources)} parent classes for {len(bundles)} models; give one per model")
    parents = [
        mg.Parent(b.generator, b.discriminator, name.strip(), source)
        for b, name, source in zip(bundles, class_names, sources, strict=True)
    ]
    if run.root is not None:
        settings.root = _root_index(run.root, class_names)
        resolved.recipe["settings"]["root"] = settings.root
        resolved.recipe.pop("root", None)
    if run.rooted and not settings.rooting:
        raise GaneditError("--rooted reuses rooted models, and --no-rooting roots nothing; drop one of the two")
    if (run.rooted or run.keep_rooted) and settings.method != "cocktail":
        flag = "--rooted" if run.rooted else "--keep-rooted"
        raise GaneditError(f"--method {settings.method} roots nothing, so {flag} means nothing to it; drop {flag}")
    plan = mg.validate(parents, settings)
    if dry_run:
        report = {"models": model_names, "judge": run.judge, "output": None, "written": [], "plan": plan,
                  "settings": vars(settings), "recipe": resolved.recipe}  # fmt: skip
        if as_json:
            emit_json(report)
        else:
            out = stdout_console()
            out.print(
                f"merge {len(parents)} models into classes {', '.join(plan['classes'])} ({plan['resolution']} px)"
            )
            for stage in plan["stages"]:
                out.print(f"  {stage}")
            out.print("valid; nothing was trained (--dry-run)")
        return

    rooted_models = [_read_rooted(Path(p), torch_device) for p in run.rooted] if run.rooted else None
    keep = Path(run.keep_rooted) if run.keep_rooted else None
    if keep is not None and keep.exists() and not keep.is_dir():
        raise GaneditError(f"--keep-rooted {keep} is a file; give a folder")
    judge = _judge(run.judge, torch_device)
    checks = EditChecks(options, torch_device, parents[0].generator)
    lap("prepare")
    with TrainingProgress(quiet=quiet) as progress:
        result = mg.merge(
            parents, settings, rooted=rooted_models, checkpoint=checkpoint, checkpoint_every=run.checkpoint_every,
            resume=resume, progress=progress,
        )  # fmt: skip
    lap("edit")
    if other_process():  # rank 0 evaluates, writes and reports for a torchrun run
        return

    parent_records = [parent_record(m, p, b) for m, p, b in zip(model_names, paths, bundles, strict=True)]
    parent_records += [parent_record(p, Path(p)) for p in run.rooted]
    resolved_config = {"models": model_names, "names": class_names, "parent_classes": sources, **vars(settings)}
    parameters = {"config": resolved_config}
    if keep is not None and rooted_models is None and settings.rooting:
        make_folder(keep)
        for j, pair in enumerate(result.rooted):
            if pair is not None:
                provenance = make_provenance(
                    "merge-rooting", {**parameters, "rooted_class": j}, parent_records, settings.seed
                )
                ganedit.save_checkpoint(keep / f"rooted-{j}.safetensors", pair[0], pair[1], class_names, provenance)
    evaluation = {"training": result.info}
    if judge is not None:
        stderr_console().print(f"evaluating on {run.eval_samples} fixed latents per class ...")
        evaluation.update(
            mg.evaluate_merge(
                {_start_name(settings): result.averaged[0], "merged": result.generator}, parents, judge,
                run.eval_samples, settings.seed,
            )
        )  # fmt: skip
    lap("evaluate")
    provenance = make_provenance("merge", parameters, parent_records, settings.seed, evaluation,
                                 recipe=resolved.recipe)  # fmt: skip
    ganedit.save_checkpoint(output, result.generator, result.discriminator, class_names, provenance)
    checkpoint.unlink(missing_ok=True)
    if grid is not None:
        _save_grid(parents, result, settings, grid)
    card = write_card_of(run.card, output)
    lap("write")
    kept = ([str(keep / f"rooted-{j}.safetensors") for j, pair in enumerate(result.rooted) if pair is not None]
            if keep is not None and rooted_models is None and settings.rooting else [])  # fmt: skip
    report = {"models": model_names, "judge": None, "class_names": class_names, "output": str(output),
              "written": [str(output)] + ([str(grid)] if grid else []) + card + kept,
              "grid": str(grid) if grid else None, **evaluation}  # fmt: skip
    checks.add_fid(report, {"merged": result.generator}, settings.seed, lambda n: torch.arange(n) % len(parents))
    lap("evaluate")
    report["seconds"] = stage_seconds()
    if as_json:
        emit_json(report)
    else:
        _print_report(report, judge is not None)
    checks.finish(report, as_json)


def _start_name(settings: MergeSettings) -> str:
    """The report's name for the model union fine-tuning starts from."""
    return "averaged" if settings.method == "cocktail" else "root"


def _display_name(model: str) -> str:
    from ganedit.store import zoo

    return model if model in zoo.REGISTRY else Path(model).stem


def _root_index(root, class_names: list[str]) -> int:
    if root is None:
        return 0
    if isinstance(root, int) or str(root).strip().isdigit():
        return int(root)
    lowered = [name.lower() for name in class_names]
    if str(root).lower() not in lowered:
        raise GaneditError(f"--root {root!r} is neither an index nor one of the class names {class_names}")
    return lowered.index(str(root).lower())


def _read_rooted(path: Path, device) -> tuple:
    bundle = ganedit.load_model(path, device=device)
    if bundle.discriminator is None:
        raise GaneditError(f"{path} has no discriminator; give the files --keep-rooted wrote")
    return bundle.generator, bundle.discriminator


def _judge(spec, device):
    from ganedit.judges import load_judge

    if spec is None:
        stderr_console().print("no --judge: the report's per-class quality and accuracy are skipped")
        return None
    return load_judge(spec, device=device)


def _save_grid(parents, result, settings: MergeSettings, path: Path) -> None:
    """Per class: the parent's sample, the average's (cocktail: nothing is averaged in the baselines), merged."""
    from ganedit.generators.grids import GridModel, save_merge_grid

    models = [GridModel("merged", result.generator)]
    if settings.method == "cocktail":
        average = "average of rooted" if settings.rooting else "naive average"
        models.insert(0, GridModel(average, result.averaged[0]))
    save_merge_grid(parents, models, path, settings.seed)


def _print_report(report: dict, judged: bool) -> None:
    from rich.table import Table

    out = stdout_console()
    if judged:
        table = Table(title=f"merge judged by {report['judge']} ({report['samples']} fixed latents per class)")
        models = [key for key in report["classes"][0] if key != "class"]  # parent, the start, merged
        table.add_column("class", no_wrap=True)
        distance = next(key for key in report["classes"][0]["parent"] if key.startswith("fd_"))
        table.add_column(f"{distance}: parent (floor) / {' / '.join(models[1:])}")
        table.add_column(f"accuracy: {' / '.join(models)}")
        for row in report["classes"]:
            add_plain_row(
                table, row["class"], " / ".join(f"{row[k][distance]:.2f}" for k in models),
                " / ".join(f"{row[k]['accuracy']:.1%}" for k in models),
            )  # fmt: skip
        out.print(table)
    out.print(f"wrote {report['output']}" + (f" and {report['grid']}" if report["grid"] else ""))
    out.print(timing_line(report["seconds"]))
