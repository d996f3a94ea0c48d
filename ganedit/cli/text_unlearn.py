"""`ganedit text-unlearn`: the command line of ganedit.procedures.text_unlearn (Text-to-Unlearn)."""

from pathlib import Path

import click

import ganedit
from ganedit.cli.console import stderr_console, stdout_console
from ganedit.cli.main import CONTEXT, add_plain_row, apply_common, check_writable, cli, common_options, emit_json
from ganedit.errors import GaneditError
from ganedit.procedures.text_unlearn import LAYERS, METHODS, TextUnlearnSettings

# Settings for the embedded toy models where the option is not given: a run in well under a minute on a
# 2-core CPU. Everything else is NADA's default (TextUnlearnSettings).
TOY_DEFAULTS = {"batch_size": 8, "lpips_weight": 0.05}
TOY_NEUTRAL = "a shape"
TOY_EVAL_SAMPLES = 500
SETTING_DEFAULTS = {name: getattr(TextUnlearnSettings, name, None) for name in TextUnlearnSettings.__dataclass_fields__}


def _default(name: str) -> str:
    toy = f"; toy models: {TOY_DEFAULTS[name]}" if name in TOY_DEFAULTS else ""
    return f"(default {SETTING_DEFAULTS[name]}{toy})"


@cli.command(
    "text-unlearn",
    context_settings=CONTEXT,
    epilog="""\b
MODEL defaults to the embedded toy StyleGAN2 (toy-stylegan2), with the toy CLIP and the toy oracle.

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
then load offline. Default: toy-clip for the toy models, ViT-B-32 otherwise.
--concept-images / --neutral-images DIR: the direction from image pairs (as the paper) instead of text.
--judge SPEC --feature LABEL: a classifier for PUL in the report (toy models: the toy oracle, over the
toy word the concept adds to the neutral prompt).
The run checkpoints to OUTPUT.resume every --checkpoint-every steps and on Ctrl-C; --resume continues it.""",
)
@click.argument("model", default="toy-stylegan2")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The model.")
@click.option("--concept", required=True, help="What must go, in words ('a person wearing eyeglasses').")
@click.option("--neutral", help=f"The concept without it ('a person'; toy models: {TOY_NEUTRAL!r}).")
@click.option("--method", type=click.Choice(METHODS), default="directional", show_default=True)
@click.option(
    "--templates/--no-templates", default=True, show_default=True,
    help="Embed each prompt as the mean over StyleGAN-NADA's ImageNet templates (off: the prompt alone).",
)  # fmt: skip
@click.option(
    "--concept-weighting/--no-concept-weighting", default=True, show_default=True,
    help="Pull each sample by CLIP's probability that it shows the concept (off: NADA's plain mean).",
)  # fmt: skip
@click.option("--concept-images", type=click.Path(path_type=Path), help="Folder of images showing the concept.")
@click.option("--neutral-images", type=click.Path(path_type=Path), help="Folder of images without it.")
@click.option("--clip", "clip_specs", multiple=True, metavar="SPEC", help="CLIP model (repeatable; see below).")
@click.option("--clip-weight", "clip_weights", multiple=True, type=float, help="Weight per --clip (default 1 each).")
@click.option("--iterations", type=click.IntRange(0), help=f"Training steps {_default('iterations')}.")
@click.option("--batch-size", type=click.IntRange(1), help=f"Latents per step {_default('batch_size')}.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), help=f"Adam learning rate {_default('lr')}.")
@click.option("--lpips-weight", type=click.FloatRange(0), help=f"LPIPS to the frozen model {_default('lpips_weight')}.")
@click.option(
    "--lpips", "lpips_spec", type=click.Choice(["lpips-alex", "lpips-vgg", "toy"]), help="Perceptual distance "
    "for the regulariser and the report (default lpips-alex; toy models: toy)."
)  # fmt: skip
@click.option("--anchor-weight", type=click.FloatRange(0), help=f"Weight anchor {_default('anchor_weight')}.")
@click.option("--layers", type=click.Choice(LAYERS), default="synthesis", show_default=True, help="What trains.")
@click.option("--auto-layers", type=click.IntRange(0), default=0, show_default=True, help="Adaptive top-k layers.")
@click.option(
    "--auto-layer-iters", type=click.IntRange(1), default=1, show_default=True, help="SGD steps on W+ codes per choice."
)
@click.option(
    "--auto-layer-batch", type=click.IntRange(1), default=8, show_default=True, help="Latents per layer choice."
)
@click.option("--truncation", type=click.FloatRange(0, 1), help=f"Of training latents {_default('truncation')}.")
@click.option(
    "--noise-mode", type=click.Choice(["random", "const"]), default="random", show_default=True,
    help="Synthesis noise while training: a fresh draw per step (NADA), the same in both copies; or the stored one.",
)  # fmt: skip
@click.option("--judge", "judge_spec", metavar="SPEC", help="Classifier for PUL in the report (with --feature).")
@click.option("--feature", metavar="LABEL", help="The judge's label for the concept.")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Labels of a local judge.")
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same result (on the same device).")
@click.option("--checkpoint-every", default=100, show_default=True, type=click.IntRange(0), help="0 = only on Ctrl-C.")
@click.option("--resume", is_flag=True, help="Continue the interrupted run from OUTPUT.resume.")
@click.option(
    "--eval-samples",
    type=click.IntRange(2),
    help=f"Fixed latents in the report (default 1000; toy: {TOY_EVAL_SAMPLES}).",
)
@click.option("--grid", type=click.Path(dir_okay=False, path_type=Path), help="PNG: before row, after row.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON document.")
@common_options
def text_unlearn_command(model, output, concept, neutral, method, templates, concept_weighting, concept_images,
                         neutral_images, clip_specs, clip_weights, iterations, batch_size, lr, lpips_weight,
                         lpips_spec, anchor_weight, layers, auto_layers, auto_layer_iters, auto_layer_batch, truncation,
                         noise_mode, judge_spec,
                         feature, labels, seed, checkpoint_every, resume, eval_samples, grid, as_json, device, quiet,
                         offline):  # fmt: skip
    """Remove a concept named in words from a StyleGAN2, guided by CLIP: Text-to-Unlearn."""
    from ganedit.cli.console import TrainingProgress
    from ganedit.cli.unlearn import is_embedded_toy, judge_for, judge_shows
    from ganedit.engine.sources import load_image_folder
    from ganedit.generators.formats import resolve_model_path
    from ganedit.generators.sampling import save_before_after_grid
    from ganedit.judges.clip import DEFAULT_CLIP, load_clips
    from ganedit.judges.perceptual import load_perceptual
    from ganedit.procedures import text_unlearn as tu
    from ganedit.store.provenance import make_provenance, parent_record

    torch_device = apply_common(device, quiet, offline)
    check_writable(output, grid)
    toy = is_embedded_toy(model)
    if not concept.strip():
        TextUnlearnSettings(concept, "").validate()  # raises: the concept prompt is empty
    if neutral is None:
        if not toy:
            raise GaneditError("give --neutral: the concept without what must go (for eyeglasses on faces: 'a person')")
        neutral = TOY_NEUTRAL
    given = {"iterations": iterations, "batch_size": batch_size, "lr": lr, "lpips_weight": lpips_weight,
             "anchor_weight": anchor_weight, "truncation": truncation}  # fmt: skip
    defaults = TOY_DEFAULTS if toy else {}
    values = {
        name: value if value is not None else defaults.get(name, SETTING_DEFAULTS[name])
        for name, value in given.items()
    }
    settings = TextUnlearnSettings(concept=concept, neutral=neutral, method=method, templates=templates,
                                   concept_weighting=concept_weighting, layers=layers,
                                   auto_layers=auto_layers, auto_layer_iters=auto_layer_iters,
                                   auto_layer_batch=auto_layer_batch, noise_mode=noise_mode,
                                   clip_weights=list(clip_weights), seed=seed, **values)  # fmt: skip
    clip_specs = list(clip_specs) or (["toy-clip"] if toy else [DEFAULT_CLIP])
    settings.validate(len(clip_specs))
    if (concept_images is None) != (neutral_images is None):
        raise GaneditError("an image-pair direction needs both --concept-images and --neutral-images")

    model_path = resolve_model_path(model)
    bundle = ganedit.load_model(model_path, device=torch_device)
    G = bundle.generator
    if G.arch != "stylegan2-generator":
        raise GaneditError(f"{model} is a {G.arch} model; text-unlearn works on StyleGAN2 generators (rosinality "
                           ".pt, NVIDIA .pkl, ganedit files); for BigGAN, see embed-tune")  # fmt: skip
    direction_images = None
    if concept_images is not None:
        direction_images = (load_image_folder(concept_images, G.img_resolution),
                            load_image_folder(neutral_images, G.img_resolution))  # fmt: skip
    clips = load_clips(clip_specs, torch_device)
    lpips_spec = lpips_spec or ("toy" if toy else "lpips-alex")
    try:
        perceptual = load_perceptual(lpips_spec, torch_device)
    except GaneditError as error:
        if settings.lpips_weight > 0:
            raise
        perceptual = None  # only the report needed it: go on without LPIPS there, and say why
        stderr_console().print(f"[yellow]no LPIPS in the report: {error}[/yellow]")
    judge, feature_index = None, None
    if feature is None and judge_spec is None and toy:
        feature = _toy_feature(concept, neutral)
    if feature is not None:
        judge, feature_index = judge_for(bundle, model, judge_spec, labels, feature, torch_device)
    elif judge_spec is not None:
        raise GaneditError("--judge needs --feature: the judge's label for the concept")

    checkpoint = output.with_name(output.name + ".resume")
    with TrainingProgress(quiet=quiet) as progress:
        result = tu.text_unlearn(G, clips, settings, direction_images=direction_images, perceptual=perceptual,
                                 checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume,
                                 progress=progress)  # fmt: skip

    eval_samples = eval_samples or (TOY_EVAL_SAMPLES if toy else 1000)
    stderr_console().print(f"evaluating on {eval_samples} fixed latents ...")
    evaluation = {"training": result.info}
    evaluation.update(tu.evaluate_text_unlearning(G, result.generator, clips[0], concept, judge=judge,
                                                  feature=feature_index, perceptual=perceptual,
                                                  samples=eval_samples, seed=seed))  # fmt: skip
    parameters = {
        **vars(settings),
        "clips": [clip.name for clip in clips],
        "concept_images": str(concept_images) if concept_images else None,
        "neutral_images": str(neutral_images) if neutral_images else None,
        "perceptual": getattr(perceptual, "name", None),
    }
    parents = [parent_record(str(model), model_path)]
    provenance = make_provenance("text-unlearn", parameters, parents, seed, evaluation)
    ganedit.save_checkpoint(output, result.generator, bundle.discriminator, provenance=provenance)
    checkpoint.unlink(missing_ok=True)
    if grid is not None:
        save_before_after_grid(G, result.generator, grid, seed, shows=judge_shows(judge, feature_index))
    report = {"model": str(model), "written": str(output), "grid": str(grid) if grid else None, "method": method,
              "neutral": neutral, **evaluation}  # fmt: skip
    if as_json:
        emit_json(report)
        return
    _print_report(report)


def _toy_feature(concept: str, neutral: str) -> str | None:
    """The toy world word the concept adds to the neutral prompt ('red' for 'a red shape' vs 'a shape'), if one."""
    from ganedit.toy.captions import known_words
    from ganedit.toy.world import ATTRIBUTES

    names = {name for values in ATTRIBUTES.values() for name in values}
    added = [word for word in known_words(concept)[0] if word in names and word not in known_words(neutral)[0]]
    return added[0] if len(added) == 1 else None


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
    add_plain_row(table, f"FID vs {reference}", f"{report['fid_before']:.3f}", f"{report['fid_after']:.3f}")
    add_plain_row(table, f"KID vs {reference}", f"{report['kid_before']:.4f}", f"{report['kid_after']:.4f}")
    out.print(table)
    out.print(f"wrote {report['written']}" + (f" and {report['grid']}" if report["grid"] else ""))
