"""`ganedit unlearn`: the command line of ganedit.procedures.unlearn (Adapt-then-Unlearn)."""

from dataclasses import dataclass
from pathlib import Path

import click
import torch

import ganedit
from ganedit.cli.console import stderr_console, stdout_console
from ganedit.cli.gates import EditChecks, distance_rows
from ganedit.cli.judging import judge_for, save_feature_grid
from ganedit.cli.main import (
    CONTEXT,
    add_plain_row,
    apply_common,
    check_room,
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
from ganedit.cli.recipe import CARD_HELP, editing_command, model_output_grid, resolve, write_card_of
from ganedit.errors import ArchitectureMismatchError, GaneditError
from ganedit.procedures.unlearn import UnlearnSettings
from ganedit.settings import setting
from ganedit.store.atomic import make_folder

DOMAIN_GAP_WARNING = 1.5  # the folder's nearest-sample distance over the samples' own (ganedit.judges.detector)


@dataclass
class UnlearnRun:
    """What `ganedit unlearn` runs on and writes (a recipe's top-level keys); the settings are UnlearnSettings."""

    model: str | None = setting(None, "The model to unlearn from (path or zoo name).", option=False)
    output: str | None = setting(None, "The model to write (.safetensors).", aliases=("-o",), metavar="FILE")
    negatives: str | None = setting(None, "Folder of images showing what must go.", metavar="DIR")
    feature: str | None = setting(None, "The judge's label for what must go (mines negatives, filters positives).",
                                  metavar="LABEL")  # fmt: skip
    judge: str | None = setting(None, "Classifier that recognises the feature (see below).", metavar="SPEC")
    labels: str | None = setting(None, "Labels file of a local judge, one per line.", metavar="FILE")
    positives: str | None = setting(None, "Folder of images without the feature (stage 2).", metavar="DIR")
    mine: int = setting(64, "Negatives to mine with the judge, or to top --negatives up to with the detector "
                        "(at least K x negatives-per-model).", min=1)  # fmt: skip
    detector: str | None = setting(None, "Without --feature: the CLIP image encoder of the detector learned from "
                                   "--negatives (default ViT-B-32; toy models: toy-clip).", metavar="SPEC")  # fmt: skip
    detector_recall: float = setting(0.9, "Share of unseen negatives the detector's threshold flags.", min=0,
                                     max=1, min_open=True, max_open=True)  # fmt: skip
    detector_pool: int = setting(1000, "The model's own samples the detector is fitted against.", min=16)
    keep_adapted: str | None = setting(None, "Save the adapted models in this folder.", metavar="DIR")
    adapted: list[str] = setting([], "Reuse adapted models saved with --keep-adapted (repeatable); skips stage 1.",
                                 metavar="FILE")  # fmt: skip
    checkpoint_every: int = setting(100, "Write OUTPUT.resume every N steps (0 = only on Ctrl-C).", min=0)
    eval_samples: int = setting(1000, "Fixed latents the report judges.", min=2)
    card: bool = setting(False, CARD_HELP)
    grid: str | None = setting(None, "PNG: rows before / after; columns where the judge saw the feature, then random.",
                               metavar="FILE")  # fmt: skip


@cli.command(
    "unlearn",
    context_settings=CONTEXT,
    epilog="""\b
MODEL defaults to the command's packaged recipe (ganedit/data/recipes/unlearn.toml): the embedded toy
StyleGAN2, judged by the toy oracle, with short runs sized for a CPU.

\b
Examples:
  ganedit unlearn --feature star -o no-star.safetensors --grid no-star.png     # a shape kind, toy model
  ganedit unlearn --feature red -o no-red.safetensors                          # a colour, toy model
  ganedit unlearn ffhq.pkl --negatives hats/ --judge resnet50=hat.safetensors --labels hat.txt \\
      --feature hat -o no-hats.safetensors
  ganedit unlearn --recipe recipes/unlearn-afhq-cat.toml -o no-cats.safetensors   # a paper's setup
  ganedit unlearn --feature star --method extrapolate --gamma 2 -o quick.safetensors   # the baseline
  ganedit unlearn --feature star -o out.safetensors --resume                    # continue an interrupted run

\b
Negatives: --negatives DIR (PNG/JPEG/WebP/BMP directly in DIR, any size: centre square crop, then
Lanczos resize to the model's resolution), or mined: samples of MODEL that --judge calls --feature.
Positives of stage 2: MODEL's samples that the judge does not call --feature, or --positives DIR.
--judge SPEC: as embed-tune's; `toy` is the toy oracle over the attribute (shape, colour, background)
that names --feature.
A recipe (--recipe FILE, TOML) holds these options' values, with the settings under [settings];
options given on the command line override it. `ganedit info OUT --recipe` prints the one a model was
made with. The run checkpoints to OUTPUT.resume every --checkpoint-every steps and on Ctrl-C;
--resume continues it.
Several processes (GPUs): torchrun --nproc-per-node N -m ganedit unlearn ... (--batch-size is per process;
rank 0 reports and writes; resume with the same N).""",
)
@click.argument("model", required=False)
@editing_command("unlearn", UnlearnRun, UnlearnSettings)
def unlearn_command(model, recipe_file, resume, as_json, device, quiet, offline, allow_nonfinite, **options):
    """Remove a feature (a class, an attribute) from a StyleGAN2: Adapt-then-Unlearn."""
    from ganedit.cli.console import TrainingProgress
    from ganedit.engine.sources import load_image_folder
    from ganedit.generators.formats import resolve_model_path
    from ganedit.procedures import unlearn as ul
    from ganedit.store.provenance import make_provenance, parent_record

    torch_device = apply_common(device, quiet, offline, allow_nonfinite)
    resolved = resolve("unlearn", UnlearnRun, UnlearnSettings, {**options, "model": model}, recipe_file)
    run, settings = resolved.run, resolved.settings
    model, output, grid = model_output_grid(run, inputs=run.adapted)
    checkpoint = resume_file(output.with_name(output.name + ".resume"))
    lock_output(output)
    negatives, positives = (Path(p) if p else None for p in (run.negatives, run.positives))
    feature, judge_spec, labels, seed = run.feature, run.judge, run.labels, settings.seed
    adapted_files = [Path(p) for p in run.adapted]
    keep_adapted = Path(run.keep_adapted) if run.keep_adapted else None
    if keep_adapted is not None:
        check_writable_folder(keep_adapted, "--keep-adapted")
    method = settings.method
    model_path = resolve_model_path(model)
    bundle = ganedit.load_model(model_path, device=torch_device)
    bundle.source = str(model)
    G, D = bundle.generator, bundle.discriminator
    if G.arch != "stylegan2-generator":
        raise GaneditError(f"{model} is a {G.arch} model; unlearn works on StyleGAN2 generators")
    if D is None and (method == "repulsion" or not adapted_files):
        raise GaneditError(
            f"{model} has no discriminator, and adaptation needs one: give a training checkpoint with D "
            "(rosinality .pt with 'd', NVIDIA .pkl with 'D', a ganedit file written with D)"
        )
    if negatives is None and feature is None and not adapted_files:
        raise GaneditError("say what must go: --negatives DIR, or --feature LABEL (negatives mined with the judge)")
    check_room(output, [G, D])
    checks = EditChecks(options, torch_device, G)

    judge, feature_index, detector = None, None, None
    if feature is not None:
        judge, feature_index = judge_for(judge_spec, labels, feature, torch_device)
    elif options.get("judge") is not None:  # a recipe's judge (the toy one) only applies with --feature
        raise GaneditError("--judge needs --feature: the judge's label for what must go")
    resolution = G.img_resolution
    negative_images = None
    wanted = max(run.mine, settings.adapted_models * settings.negatives_per_model)
    if not adapted_files:
        if negatives is not None:
            negative_images = load_image_folder(negatives, resolution)
        else:
            negative_images = ul.mine_negatives(G, judge, feature_index, wanted, seed)
    positive_images = load_image_folder(positives, resolution) if positives is not None else None
    if judge is None and negative_images is not None and positive_images is None and method == "repulsion":
        # no classifier and no positives: learn what the folder shows, to filter the model's samples
        detector, negative_images = _detector_from_negatives(G, negative_images, negatives, run, wanted, seed,
                                                             torch_device)  # fmt: skip
        judge, feature_index, feature = detector, 1, detector.feature
    if method == "repulsion" and positive_images is None and judge is None:
        raise GaneditError("stage 2 needs positives: give --positives DIR, or --feature LABEL with a judge to filter")
    adapted = [_read_adapted(path, G, torch_device) for path in adapted_files] if adapted_files else None
    if keep_adapted is not None and keep_adapted.exists() and not keep_adapted.is_dir():
        raise GaneditError(f"--keep-adapted {keep_adapted} is a file; give a folder")

    is_negative = (lambda images: judge(images).argmax(dim=1) == feature_index) if judge is not None else None
    if detector is not None:
        is_negative = detector.may_show
    lap("prepare")
    with TrainingProgress(quiet=quiet) as progress:
        result = ul.unlearn(
            G, D, negative_images, settings, is_negative=is_negative, positives=positive_images, adapted=adapted,
            checkpoint=checkpoint, checkpoint_every=run.checkpoint_every, resume=resume, progress=progress,
        )  # fmt: skip
    lap("edit")
    if other_process():  # rank 0 evaluates, writes and reports for a torchrun run
        return

    parents = [parent_record(str(model), model_path, bundle)] + [parent_record(str(p), p) for p in adapted_files]
    parameters = {
        **vars(settings),
        "negatives": str(negatives)
        if negatives
        else (f"{len(negative_images)} mined" if negative_images is not None else None),
        "negatives_count": len(negative_images) if negative_images is not None else None,
        "positives": str(positives) if positives else "generated, filtered by the judge",
        "feature": feature,
        "judge": getattr(judge, "name", None),
        "detector": detector.state() if detector is not None else None,
    }
    if keep_adapted is not None and adapted is None:
        make_folder(keep_adapted)
        for k, vector in enumerate(result.adapted):
            model_k = ul.model_from_flat(G, vector)
            provenance = make_provenance("unlearn-adapt", {**parameters, "adapted_index": k}, parents, seed)
            ganedit.save_checkpoint(keep_adapted / f"adapted-{k}.safetensors", model_k, D, provenance=provenance)
    evaluation = {"training": result.info}
    if judge is not None:
        stderr_console().print(f"evaluating on {run.eval_samples} fixed latents ...")
        evaluation.update(ul.evaluate_unlearning(G, result.generator, judge, feature_index, run.eval_samples, seed))
    lap("evaluate")
    provenance = make_provenance("unlearn", parameters, parents, seed, evaluation, recipe=resolved.recipe)
    discriminator = result.discriminator if result.discriminator is not None else D
    ganedit.save_checkpoint(output, result.generator, discriminator, provenance=provenance)
    checkpoint.unlink(missing_ok=True)
    grid_columns = None  # what the grid's columns are: latents with the feature, random ones
    if grid is not None:
        grid_columns = save_feature_grid(G, result.generator, grid, seed, judge, feature_index, feature)
    card = write_card_of(run.card, output)
    lap("write")
    repulsion = settings.repulsion if method == "repulsion" else None
    kept = ([str(keep_adapted / f"adapted-{k}.safetensors") for k in range(len(result.adapted))]
            if keep_adapted is not None and adapted is None else [])  # fmt: skip
    written = [str(output)] + ([str(grid)] if grid else []) + card + kept
    report = {"model": str(model), "judge": None, "output": str(output), "written": written,
              "grid": str(grid) if grid else None,
              "grid_columns": grid_columns,
              "method": method, "repulsion": repulsion, **evaluation}  # fmt: skip
    if detector is not None:  # PUL and the distances were counted by the negatives' detector, not a classifier
        report["pul_counted_by"] = f"the detector learned from {negatives}/ ({detector.name})"
        report["detector"] = {key: value for key, value in detector.state().items() if key != "weight"}
    checks.add_fid(report, {"before": G, "after": result.generator}, seed)
    lap("evaluate")
    report["seconds"] = stage_seconds()
    if as_json:
        emit_json(report)
    else:
        _print_report(report, judge is not None)
    checks.finish(report, as_json)


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
        for kind, space, before, after in distance_rows(report):
            add_plain_row(table, f"{kind}_{space} vs {positives} positives ({report['feature_space']})",
                          f"{before:.4g}", f"{after:.4g}")  # fmt: skip
        out.print(table)
    out.print(f"wrote {report['output']}" + (f" and {report['grid']}" if report["grid"] else ""))
    out.print(timing_line(report["seconds"]))


def _detector_from_negatives(G, negative_images, folder: Path, run: UnlearnRun, wanted: int, seed: int, device):
    """The detector of what `folder` shows (ganedit.judges.detector), and the negatives topped up to
    `wanted` with the model's own samples it flags most surely. Warns across a domain gap."""
    from ganedit.judges.clip import load_clip
    from ganedit.judges.detector import MIN_NEGATIVES, DetectorSettings, learn_detector

    if len(negative_images) < MIN_NEGATIVES:  # before any download
        raise GaneditError(
            f"{folder} has {len(negative_images)} images; learning what they show needs at least {MIN_NEGATIVES} "
            "(or give --positives DIR, or --feature LABEL with a --judge)"
        )
    console = stderr_console()
    encoder = load_clip(run.detector or "ViT-B-32", device)
    console.print(f"learning what {folder}/ shows: {len(negative_images)} images against {run.detector_pool} "
                  f"samples of the model, in {encoder.name}'s image space ...")  # fmt: skip
    learned = learn_detector(G, negative_images, f"{folder.name}", encoder, run.detector_pool,
                             DetectorSettings(recall=run.detector_recall), seed)  # fmt: skip
    detector = learned.detector
    info = detector.info
    console.print(f"detector: cross-fitted AUC {info['crossfit_auc']:.2f}, flags {100 * info['pool_flagged']:.1f} % "
                  "of the model's samples")  # fmt: skip
    if info["domain_gap"] > DOMAIN_GAP_WARNING:
        detector.info["warning"] = (
            f"domain gap {info['domain_gap']:.1f}x: the folder lies far from the model's samples, so the detector's "
            "counts (PUL) may not describe what the model draws"
        )
        console.print(
            f"[yellow]warning: the images in {folder}/ lie far from the model's own samples in {encoder.name}'s "
            f"space ({info['domain_gap']:.1f}x the samples' own spacing): the detector may not find the feature in "
            "what the model draws; negatives picked from the model's samples work best[/yellow]"
        )
    extra = learned.top_flagged(max(0, wanted - len(negative_images)))
    if len(extra):
        if negative_images.dtype == torch.uint8:
            extra = ((extra + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        negative_images = torch.cat([negative_images, extra.to(negative_images.dtype)])
        console.print(f"topped the negatives up with {len(extra)} of the model's samples the detector flags")
    detector.info["topped_up"] = len(extra)
    return detector, negative_images


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
