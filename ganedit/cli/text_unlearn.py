"""`ganedit text-unlearn`: the command line of ganedit.procedures.text_unlearn (Text-to-Unlearn)."""

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
from ganedit.errors import GaneditError
from ganedit.procedures.text_unlearn import TextUnlearnSettings
from ganedit.settings import setting

DEFAULT_LPIPS = "lpips-alex"


@dataclass
class TextUnlearnRun:
    """What `ganedit text-unlearn` runs on and writes (a recipe's top-level keys)."""

    model: str | None = setting(None, "The model (path or zoo name).", option=False)
    output: str | None = setting(None, "The model to write (.safetensors).", aliases=("-o",), metavar="FILE")
    clip: list[str] = setting([], "CLIP model (repeatable: an ensemble; see below). Default: ViT-B-32.",
                              metavar="SPEC")  # fmt: skip
    concept_images: str | None = setting(None, "Folder of images showing the concept.", metavar="DIR")
    neutral_images: str | None = setting(None, "Folder of images without it.", metavar="DIR")
    lpips: str | None = setting(None, f"Perceptual distance of the regulariser and report (default {DEFAULT_LPIPS}).",
                                choices=("lpips-alex", "lpips-vgg", "toy"))  # fmt: skip
    judge: str | None = setting(None, "Classifier for PUL in the report (with --feature; `toy`: the toy oracle, "
                                "over the toy word the concept adds).", metavar="SPEC")  # fmt: skip
    feature: str | None = setting(None, "The judge's label for the concept.", metavar="LABEL")
    labels: str | None = setting(None, "Labels file of a local judge.", metavar="FILE")
    checkpoint_every: int = setting(100, "Write OUTPUT.resume every N steps (0 = only on Ctrl-C).", min=0)
    eval_samples: int = setting(1000, "Fixed latents in the report.", min=2)
    card: bool = setting(False, CARD_HELP)
    grid: str | None = setting(None, "PNG: rows before / after; columns where the judge saw the concept, then random.",
                               metavar="FILE")  # fmt: skip


@cli.command(
    "text-unlearn",
    context_settings=CONTEXT,
    epilog="""\b
MODEL defaults to the command's packaged recipe (ganedit/data/recipes/text-unlearn.toml): the embedded
toy StyleGAN2 with the toy CLIP, the toy oracle and the neutral prompt 'a shape'.

\b
Examples:
  ganedit text-unlearn --concept "a red shape" -o no-red.safetensors --grid no-red.png   # toy, offline
  ganedit text-unlearn ffhq.pkl --concept "a person wearing eyeglasses" --neutral "a person" \\
      -o no-glasses.safetensors                                 # CLIP ViT-B/32 (OpenAI weights)
  ganedit text-unlearn ffhq.pkl --concept "a smiling face" --neutral "a face" --clip ViT-B-32 \\
      --clip ViT-B-16 --lpips-weight 0.5 -o out.safetensors      # ensemble, LPIPS regulariser
  ganedit text-unlearn --concept "a red shape" --method global -o baseline.safetensors   # the baseline

\b
--clip SPEC (repeatable: an ensemble, weighted by --clip-weight): toy-clip, an open_clip architecture
(ViT-B-32 = its OpenAI weights), NAME:TAG (open_clip pretrained tag), NAME:/path/weights (a local
file; OpenAI files need NAME-quickgelu). Weights come from the Hugging Face hub into its cache once,
then load offline.
--concept-images / --neutral-images DIR: the direction from image pairs (as the paper) instead of text.
A recipe (--recipe FILE, TOML) holds these options' values, the settings under [settings]; options
given here override it. The run checkpoints to OUTPUT.resume every --checkpoint-every steps and on
Ctrl-C; --resume continues it.
Several processes (GPUs): torchrun --nproc-per-node N -m ganedit text-unlearn ... (--batch-size is per process;
rank 0 reports and writes; resume with the same N).""",
)
@click.argument("model", required=False)
@editing_command("text-unlearn", TextUnlearnRun, TextUnlearnSettings)
def text_unlearn_command(model, recipe_file, resume, as_json, device, quiet, offline, allow_nonfinite, **options):
    """Remove a concept named in words from a StyleGAN2, guided by CLIP: Text-to-Unlearn."""
    from ganedit.cli.console import TrainingProgress
    from ganedit.engine.sources import load_image_folder
    from ganedit.generators.formats import resolve_model_path
    from ganedit.judges.clip import DEFAULT_CLIP, load_clips
    from ganedit.judges.perceptual import load_perceptual
    from ganedit.procedures import text_unlearn as tu
    from ganedit.store.provenance import make_provenance, parent_record

    torch_device = apply_common(device, quiet, offline, allow_nonfinite)
    resolved = resolve("text-unlearn", TextUnlearnRun, TextUnlearnSettings, {**options, "model": model}, recipe_file)
    run, settings = resolved.run, resolved.settings
    model, output, grid = model_output_grid(run)
    checkpoint = resume_file(output.with_name(output.name + ".resume"))
    lock_output(output)
    clip_specs = run.clip or [DEFAULT_CLIP]
    settings.validate(len(clip_specs))
    if (run.concept_images is None) != (run.neutral_images is None):
        raise GaneditError("an image-pair direction needs both --concept-images and --neutral-images")

    model_path = resolve_model_path(model)
    bundle = ganedit.load_model(model_path, device=torch_device)
    G = bundle.generator
    check_room(output, [G])
    if G.arch != "stylegan2-generator":
        raise GaneditError(f"{model} is a {G.arch} model; text-unlearn works on StyleGAN2 generators (rosinality "
                           ".pt, NVIDIA .pkl, ganedit files); for BigGAN, see embed-tune")  # fmt: skip
    direction_images = None
    if run.concept_images is not None:
        direction_images = tuple(
            load_image_folder(Path(folder), G.img_resolution, dtype=torch.float32)
            for folder in (run.concept_images, run.neutral_images)
        )
    clips = load_clips(clip_specs, torch_device)
    try:
        perceptual = load_perceptual(run.lpips or DEFAULT_LPIPS, torch_device)
    except GaneditError as error:
        if settings.lpips_weight > 0:
            raise
        perceptual = None  # only the report needed it: go on without LPIPS there, and say why
        stderr_console().print(f"[yellow]no LPIPS in the report: {error}[/yellow]")
    judge, feature_index, feature = None, None, run.feature
    if feature is None and run.judge == "toy":
        from ganedit.toy.captions import added_word

        feature = added_word(settings.concept, settings.neutral)
    if feature is not None:
        judge, feature_index = judge_for(run.judge, run.labels, feature, torch_device)
    elif run.judge not in (None, "toy"):
        raise GaneditError("--judge needs --feature: the judge's label for the concept")
    checks = EditChecks(options, torch_device, G)

    lap("prepare")
    with TrainingProgress(quiet=quiet) as progress:
        result = tu.text_unlearn(G, clips, settings, direction_images=direction_images, perceptual=perceptual,
                                 checkpoint=checkpoint, checkpoint_every=run.checkpoint_every, resume=resume,
                                 progress=progress)  # fmt: skip
    lap("edit")
    if other_process():  # rank 0 evaluates, writes and reports for a torchrun run
        return

    stderr_console().print(f"evaluating on {run.eval_samples} fixed latents ...")
    evaluation = {"training": result.info}
    evaluation.update(tu.evaluate_text_unlearning(G, result.generator, clips[0], settings.concept, judge=judge,
                                                  feature=feature_index, perceptual=perceptual,
                                                  samples=run.eval_samples, seed=settings.seed))  # fmt: skip
    parameters = {
        **vars(settings),
        "clips": [clip.name for clip in clips],
        "concept_images": run.concept_images,
        "neutral_images": run.neutral_images,
        "perceptual": getattr(perceptual, "name", None),
    }
    parents = [parent_record(str(model), model_path, bundle)]
    lap("evaluate")
    provenance = make_provenance("text-unlearn", parameters, parents, settings.seed, evaluation,
                                 recipe=resolved.recipe)  # fmt: skip
    ganedit.save_checkpoint(output, result.generator, bundle.discriminator, provenance=provenance)
    checkpoint.unlink(missing_ok=True)
    grid_columns = None  # what the grid's columns are: latents with the feature, random ones
    if grid is not None:
        grid_columns = save_feature_grid(G, result.generator, grid, settings.seed, judge, feature_index, feature)
    card = write_card_of(run.card, output)
    lap("write")
    report = {"model": str(model), "judge": None, "output": str(output),
              "written": [str(output)] + ([str(grid)] if grid else []) + card, "grid": str(grid) if grid else None,
              "grid_columns": grid_columns,
              "method": settings.method, "neutral": settings.neutral, **evaluation}  # fmt: skip
    checks.add_fid(report, {"before": G, "after": result.generator}, settings.seed)
    lap("evaluate")
    report["seconds"] = stage_seconds()
    if as_json:
        emit_json(report)
    else:
        _print_report(report)
    checks.finish(report, as_json)


def _print_report(report: dict) -> None:
    from rich.table import Table

    out = stdout_console()
    table = Table(title=f"text-unlearn {report['concept']!r} ({report['method']}; {report['samples']} fixed latents)")
    for column in ("", "before", "after"):
        table.add_column(column)
    add_plain_row(table, f"CLIP score ({report['clip']})", f"{report['clip_score_before']:.2f}",
                  f"{report['clip_score_after']:.2f}")  # fmt: skip
    add_plain_row(table, "CLIP score W1 (before vs after)", "", f"{report['clip_score_w1']:.2f}")
    if "pul" in report:
        add_plain_row(table, f"samples with '{report['feature']}' ({report['judge']})", report["negatives_before"],
                      report["negatives_after"])  # fmt: skip
        add_plain_row(table, "PUL %", "", f"{report['pul']:.1f}")
    if "perceptual_distance" in report:
        add_plain_row(table, f"perceptual distance to before ({report['perceptual']})", "0",
                      f"{report['perceptual_distance']:.4f}")  # fmt: skip
    reference = f"{report['reference']}, {report['quality_features']}"
    for kind, space, before, after in distance_rows(report):
        add_plain_row(table, f"{kind}_{space} vs {reference}", f"{before:.4g}", f"{after:.4g}")
    out.print(table)
    out.print(f"wrote {report['output']}" + (f" and {report['grid']}" if report["grid"] else ""))
    out.print(timing_line(report["seconds"]))
