"""`ganedit unlearn`: the command line of ganedit.procedures.unlearn (Adapt-then-Unlearn)."""

from pathlib import Path

import click
import torch

import ganedit
from ganedit.cli.console import stderr_console, stdout_console
from ganedit.cli.main import CONTEXT, add_plain_row, apply_common, check_writable, cli, common_options, emit_json
from ganedit.errors import ArchitectureMismatchError, GaneditError
from ganedit.procedures.unlearn import METHODS, REPULSIONS, UnlearnSettings

# Settings for the embedded toy models, used where the option is not given: a run in well under a
# minute on a 2-core CPU (the defaults of UnlearnSettings are sized for real 256 px models). R1 0.1:
# 32 px images need far less R1 than the paper's 10 (StyleGAN2-ADA's heuristic 0.0002 * res^2 / batch
# gives 0.026 here); measured on the one-liner (500 latents, seed 0): star PUL 44 -> 80 %, red 12 -> 43 %.
TOY_DEFAULTS = {"adapted_models": 2, "adapt_steps": 25, "steps": 250, "batch_size": 8, "r1_gamma": 0.1}
TOY_EVAL_SAMPLES = 500  # the report of an embedded toy model (others: 1000)
SETTING_DEFAULTS = {name: getattr(UnlearnSettings, name) for name in UnlearnSettings.__dataclass_fields__}


def _default(name: str) -> str:
    toy = f"; toy models: {TOY_DEFAULTS[name]}" if name in TOY_DEFAULTS else ""
    return f"(default {SETTING_DEFAULTS[name]}{toy})"


@cli.command(
    "unlearn",
    context_settings=CONTEXT,
    epilog="""\b
MODEL defaults to the embedded toy StyleGAN2 (toy-stylegan2), judged by the toy oracle.

\b
Examples:
  ganedit unlearn --feature star -o no-star.safetensors --grid no-star.png     # a shape kind, toy model
  ganedit unlearn --feature red -o no-red.safetensors                          # a colour, toy model
  ganedit unlearn ffhq.pkl --negatives hats/ --judge resnet50=hat.safetensors --labels hat.txt \\
      --feature hat -o no-hats.safetensors
  ganedit unlearn --feature star --method extrapolate --gamma 2 -o quick.safetensors   # the baseline
  ganedit unlearn --feature star -o out.safetensors --resume                    # continue an interrupted run

\b
Negatives: --negatives DIR (PNG/JPEG/WebP/BMP directly in DIR, any size: centre square crop, then
Lanczos resize to the model's resolution), or mined: samples of MODEL that --judge calls --feature.
Positives of stage 2: MODEL's samples that the judge does not call --feature, or --positives DIR.
--judge SPEC: as embed-tune's --classifier; toy models default to the toy oracle over the attribute
(shape, colour, background) that names --feature.
The run checkpoints to OUTPUT.resume every --checkpoint-every steps and on Ctrl-C; --resume continues it.""",
)
@click.argument("model", default="toy-stylegan2")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The model.")
@click.option("--negatives", type=click.Path(path_type=Path), help="Folder of images showing what must go.")
@click.option(
    "--feature", metavar="LABEL", help="The judge's label for what must go (mines negatives, filters positives)."
)
@click.option("--judge", "judge_spec", metavar="SPEC", help="Classifier that recognises the feature (see below).")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Labels of a local judge.")
@click.option("--positives", type=click.Path(path_type=Path), help="Folder of images without the feature (stage 2).")
@click.option("--mine", default=64, show_default=True, type=click.IntRange(1), help="Negatives to mine with --judge.")
@click.option("--method", type=click.Choice(METHODS), default="repulsion", show_default=True)
@click.option("--repulsion", default="el2", show_default=True, help=f"Repulsion term: {', '.join(REPULSIONS)}.")
@click.option("--adapted-models", type=click.IntRange(1), help=f"K adapted models {_default('adapted_models')}.")
@click.option("--adapt-steps", type=click.IntRange(0), help=f"Stage 1 steps per model {_default('adapt_steps')}.")
@click.option("--steps", type=click.IntRange(0), help=f"Stage 2 steps {_default('steps')}.")
@click.option("--batch-size", type=click.IntRange(1), help=f"Images per step {_default('batch_size')}.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), help=f"Adam learning rate {_default('lr')}.")
@click.option("--ewc-lambda", type=click.FloatRange(0), help=f"EWC lambda {_default('ewc_lambda')}.")
@click.option("--alpha", type=click.FloatRange(0, min_open=True), help=f"el2 alpha, on d/d0 {_default('alpha')}.")
@click.option("--gamma", type=click.FloatRange(0), help=f"nl2/il2 gamma; extrapolate step {_default('gamma')}.")
@click.option("--weight", type=click.FloatRange(0), help=f"el2 term weight {_default('weight')}.")
@click.option("--r1-gamma", type=click.FloatRange(0), help=f"R1 weight of both stages {_default('r1_gamma')}.")
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same result (on the same device).")
@click.option("--keep-adapted", type=click.Path(file_okay=False, path_type=Path), help="Save the adapted models here.")
@click.option(
    "--adapted",
    "adapted_files",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Reuse adapted models saved with --keep-adapted (repeatable); skips stage 1.",
)
@click.option("--checkpoint-every", default=100, show_default=True, type=click.IntRange(0), help="0 = only on Ctrl-C.")
@click.option("--resume", is_flag=True, help="Continue the interrupted run from OUTPUT.resume.")
@click.option(
    "--eval-samples",
    type=click.IntRange(2),
    help=f"Fixed latents judged (default 1000; toy models: {TOY_EVAL_SAMPLES}).",
)
@click.option("--grid", type=click.Path(dir_okay=False, path_type=Path), help="PNG: before row, after row.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON document.")
@common_options
def unlearn_command(model, output, negatives, feature, judge_spec, labels, positives, mine, method, repulsion,
                    adapted_models, adapt_steps, steps, batch_size, lr, ewc_lambda, alpha, gamma, weight, r1_gamma,
                    seed, keep_adapted, adapted_files, checkpoint_every, resume, eval_samples, grid, as_json, device,
                    quiet, offline):  # fmt: skip
    """Remove a feature (a class, an attribute) from a StyleGAN2: Adapt-then-Unlearn."""
    from ganedit.cli.console import TrainingProgress
    from ganedit.engine.sources import load_image_folder
    from ganedit.generators.formats import resolve_model_path
    from ganedit.generators.sampling import save_before_after_grid
    from ganedit.procedures import unlearn as ul
    from ganedit.store.provenance import make_provenance, parent_record

    torch_device = apply_common(device, quiet, offline)
    check_writable(output, grid)
    model_path = resolve_model_path(model)
    bundle = ganedit.load_model(model_path, device=torch_device)
    bundle.source = str(model)
    G, D = bundle.generator, bundle.discriminator
    if G.arch != "stylegan2-generator":
        raise GaneditError(f"{model} is a {G.arch} model; unlearn works on StyleGAN2 generators")
    given = {
        "adapted_models": adapted_models, "adapt_steps": adapt_steps, "steps": steps, "batch_size": batch_size,
        "lr": lr, "ewc_lambda": ewc_lambda, "alpha": alpha, "gamma": gamma, "weight": weight, "r1_gamma": r1_gamma,
    }  # fmt: skip
    defaults = TOY_DEFAULTS if is_embedded_toy(model) else {}
    values = {
        name: value if value is not None else defaults.get(name, SETTING_DEFAULTS[name])
        for name, value in given.items()
    }
    settings = UnlearnSettings(method=method, repulsion=repulsion, seed=seed, **values)
    if D is None and (method == "repulsion" or not adapted_files):
        raise GaneditError(
            f"{model} has no discriminator, and adaptation needs one: give a training checkpoint with D "
            "(rosinality .pt with 'd', NVIDIA .pkl with 'D', a ganedit file written with D)"
        )
    if negatives is None and feature is None and not adapted_files:
        raise GaneditError("say what must go: --negatives DIR, or --feature LABEL (negatives mined with the judge)")

    judge, feature_index = None, None
    if feature is not None:
        judge, feature_index = judge_for(bundle, model, judge_spec, labels, feature, torch_device)
    elif judge_spec is not None:
        raise GaneditError("--judge needs --feature: the judge's label for what must go")
    resolution = G.img_resolution
    negative_images = None
    if not adapted_files:
        if negatives is not None:
            negative_images = load_image_folder(negatives, resolution)
        else:
            negative_images = ul.mine_negatives(G, judge, feature_index, mine, seed)
    positive_images = load_image_folder(positives, resolution) if positives is not None else None
    if method == "repulsion" and positive_images is None and judge is None:
        raise GaneditError("stage 2 needs positives: give --positives DIR, or --feature LABEL with a judge to filter")
    adapted = [_read_adapted(path, G, torch_device) for path in adapted_files] if adapted_files else None
    if keep_adapted is not None and keep_adapted.exists() and not keep_adapted.is_dir():
        raise GaneditError(f"--keep-adapted {keep_adapted} is a file; give a folder")

    checkpoint = output.with_name(output.name + ".resume")
    is_negative = (lambda images: judge(images).argmax(dim=1) == feature_index) if judge is not None else None
    with TrainingProgress(quiet=quiet) as progress:
        result = ul.unlearn(
            G, D, negative_images, settings, is_negative=is_negative, positives=positive_images, adapted=adapted,
            checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume, progress=progress,
        )  # fmt: skip

    parents = [parent_record(str(model), model_path)] + [parent_record(str(p), p) for p in adapted_files]
    parameters = {
        **vars(settings),
        "negatives": str(negatives)
        if negatives
        else (f"{len(negative_images)} mined" if negative_images is not None else None),
        "negatives_count": len(negative_images) if negative_images is not None else None,
        "positives": str(positives) if positives else "generated, filtered by the judge",
        "feature": feature,
        "judge": getattr(judge, "name", None),
    }
    if keep_adapted is not None and adapted is None:
        keep_adapted.mkdir(parents=True, exist_ok=True)
        for k, vector in enumerate(result.adapted):
            model_k = ul.model_from_flat(G, vector)
            provenance = make_provenance("unlearn-adapt", {**parameters, "adapted_index": k}, parents, seed)
            ganedit.save_checkpoint(keep_adapted / f"adapted-{k}.safetensors", model_k, D, provenance=provenance)
    evaluation = {"training": result.info}
    if judge is not None:
        eval_samples = eval_samples or (TOY_EVAL_SAMPLES if is_embedded_toy(model) else 1000)
        stderr_console().print(f"evaluating on {eval_samples} fixed latents ...")
        evaluation.update(ul.evaluate_unlearning(G, result.generator, judge, feature_index, eval_samples, seed))
    provenance = make_provenance("unlearn", parameters, parents, seed, evaluation)
    discriminator = result.discriminator if result.discriminator is not None else D
    ganedit.save_checkpoint(output, result.generator, discriminator, provenance=provenance)
    checkpoint.unlink(missing_ok=True)
    if grid is not None:
        save_before_after_grid(G, result.generator, grid, seed, shows=judge_shows(judge, feature_index))
    report = {"model": str(model), "written": str(output), "grid": str(grid) if grid else None,
              "method": method, "repulsion": repulsion if method == "repulsion" else None, **evaluation}  # fmt: skip
    if as_json:
        emit_json(report)
        return
    _print_report(report, judge is not None)


def _print_report(report: dict, judged: bool) -> None:
    from rich.table import Table

    out = stdout_console()
    if judged:
        table = Table(
            title=f"unlearn '{report['feature']}' judged by {report['judge']} ({report['samples']} fixed latents)"
        )
        for column in ("", "before", "after"):
            table.add_column(column)
        add_plain_row(
            table, f"samples with '{report['feature']}'", report["negatives_before"], report["negatives_after"]
        )
        add_plain_row(table, "PUL %", "", f"{report['pul']:.1f}")
        positives = report["reference_positives"]
        add_plain_row(
            table, f"FID vs {positives} positives", f"{report['fid_before']:.3f}", f"{report['fid_after']:.3f}"
        )
        add_plain_row(
            table, f"KID vs {positives} positives", f"{report['kid_before']:.4f}", f"{report['kid_after']:.4f}"
        )
        out.print(table)
    out.print(f"wrote {report['written']}" + (f" and {report['grid']}" if report["grid"] else ""))


def is_embedded_toy(model) -> bool:
    from ganedit.store import zoo

    return str(model) in zoo.REGISTRY and zoo.REGISTRY[str(model)].embedded


def judge_shows(judge, feature_index):
    """images -> bool mask where the judge's argmax is the feature (None without a judge), for grids."""
    if judge is None:
        return None
    device = next(judge.parameters()).device
    return lambda images: (
        torch.cat([judge(part.to(device)).argmax(dim=1).cpu() for part in images.split(256)]) == (feature_index)
    )


def judge_for(bundle, model, judge_spec, labels, feature: str, device: torch.device):
    """(judge, index of the feature among its labels); toy models default to the toy oracle attribute naming it."""
    from ganedit.judges import load_judge, resolve_label

    if judge_spec is None:
        from ganedit.toy.world import ATTRIBUTES

        attribute = next((a for a, names in ATTRIBUTES.items() if feature.strip().lower() in names), None)
        toy_model = is_embedded_toy(model) or "toy" in str(bundle.metadata.get("provenance", {}).get("procedure", ""))
        if not toy_model:
            raise GaneditError(
                f"which classifier recognises {feature!r}? give --judge SPEC (see `ganedit unlearn --help`)"
            )
        if attribute is None:
            names = ", ".join(name for values in ATTRIBUTES.values() for name in values)
            raise GaneditError(f"unknown toy feature {feature!r}; choose one of: {names}")
        judge_spec = f"toy:{attribute}"
    judge = load_judge(judge_spec, labels, device)
    return judge, resolve_label(judge, feature)


def _read_adapted(path: Path, G, device) -> torch.Tensor:
    from ganedit.generators.registry import config_dict
    from ganedit.procedures.unlearn import flat, trainable

    other = ganedit.load_generator(path, device=device)
    if other.arch != G.arch or config_dict(other) != config_dict(G):
        raise ArchitectureMismatchError(
            f"adapted model {path} does not have the architecture of the model to unlearn; "
            "give models saved by --keep-adapted for the same model"
        )
    return flat(trainable(other)).detach().cpu()
