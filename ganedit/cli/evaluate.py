"""`ganedit eval`: score a saved model in the field's terms; the command line of
ganedit.judges.scorecard.evaluate_model."""

from dataclasses import dataclass
from pathlib import Path

import click
import torch

import ganedit
from ganedit.cli.console import stderr_console, stdout_console
from ganedit.cli.gates import check_gates, gate_options, parse_gates
from ganedit.cli.main import CONTEXT, add_plain_row, apply_common, check_writable, cli, common_options, emit_json
from ganedit.errors import GaneditError
from ganedit.judges.scorecard import EvalSettings
from ganedit.settings import click_options, from_mapping, given_options, setting


@dataclass
class EvalRun:
    """What `ganedit eval` scores and against what; the settings are EvalSettings."""

    against: str | None = setting(None, "The original model (PUL, before/after), a folder of real images, or a "
                                  "reference statistics file.", metavar="MODEL2|DIR|STATS")  # fmt: skip
    class_name: str | None = setting(None, "The class to score (conditional models; the judge's label for "
                                     "accuracy).", aliases=("--class",), metavar="NAME")  # fmt: skip
    judge: str | None = setting(None, "Classifier for accuracy / PUL / fd_<judge> (`toy`: the toy oracle).",
                                metavar="SPEC")  # fmt: skip
    labels: str | None = setting(None, "Labels file of a local judge, one per line.", metavar="FILE")
    feature: str | None = setting(None, "The judge's label for the feature an edit removed (PUL).", metavar="LABEL")
    clip: str | None = setting(None, "CLIP for the concept's CLIP score (toy-clip, ViT-B-32, ...).", metavar="SPEC")
    concept: str | None = setting(None, "The concept prompt whose CLIP score is reported.", metavar="TEXT")
    lpips: str = setting("lpips-alex", "Perceptual distance of the lpips diversity (lpips-alex, lpips-vgg, toy).")
    inception_weights: str | None = setting(None, "A local copy of torch-fidelity's Inception weights.",
                                            metavar="FILE")  # fmt: skip
    save_stats: str | None = setting(None, "Write the reference's Inception statistics (the --against folder or "
                                     "model; without --against, MODEL's samples) to FILE.", metavar="FILE")  # fmt: skip


@cli.command(
    "eval",
    context_settings=CONTEXT,
    epilog="""\b
Examples:
  ganedit eval no-star.safetensors --against toy-stylegan2 --judge toy --feature star   # unlearn's PUL, fd_oracle
  ganedit eval no-red.safetensors --against toy-stylegan2 --clip toy-clip --concept "a red shape"
  ganedit eval heart.safetensors --class heart --judge toy --metrics accuracy,lpips --lpips toy
  ganedit eval ffhq.pkl --against ffhq-images/ --save-stats ffhq.stats.safetensors   # FID, KID, P/R, D/C
  ganedit eval no-hats.safetensors --against ffhq.stats.safetensors --metrics fid,kid --fail-over fid=20

\b
Standard metrics (fid, kid, is, prc = precision/recall, dc = density/coverage) are torch-fidelity's, on
its Inception (TF-compatible weights, TF-style resize, uint8 input); judge- and CLIP-space distances are
fd_<space> / kd_<space> (fd_oracle, fd_clip), never FID. Samples default to the model's recipe's
eval_samples (so the figures match its editing command's), else 500 for toy models, 50,000 with a
standard metric, else 1,000; the seed to its recipe's seed, else 0.
Exit codes: 0 ok, 1 internal error, 2 bad input, 3 a --fail-under/--fail-over gate missed, 130 interrupted.""",
)
@click.argument("model")
@click_options(EvalRun)
@click_options(EvalSettings)
@gate_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON document.")
@common_options
def eval_command(model, as_json, device, quiet, offline, allow_nonfinite, fail_under, fail_over, **options):
    """Score a model: Inception FID / KID / IS / precision-recall / density-coverage, judge accuracy and PUL,
    CLIP score, LPIPS diversity, each with its sample counts and feature space."""
    torch_device = apply_common(device, quiet, offline, allow_nonfinite)
    run = from_mapping(EvalRun, given_options(EvalRun, options), "the command line")
    given = given_options(EvalSettings, options)
    gates = parse_gates(fail_under, fail_over)
    settings = EvalSettings(**given)
    save_stats = Path(run.save_stats) if run.save_stats else None
    check_writable(save_stats, inputs=[model, run.against])
    if (run.clip is None) != (run.concept is None):
        raise GaneditError("a CLIP score needs both --clip SPEC and --concept TEXT")
    if run.feature is not None and run.judge is None:
        raise GaneditError(f"which classifier recognises {run.feature!r}? give --judge SPEC")
    against_kind = _against_kind(run.against)
    report = evaluate(model, run, settings, against_kind, gates, torch_device)
    if save_stats is not None:
        from ganedit.judges.fidelity import save_stats as write_stats

        write_stats(save_stats, report.pop("_stats"))
        report["written"] = [str(save_stats)]
    report.pop("_stats", None)
    if as_json:
        emit_json(report)
    else:
        _print_report(report)
    check_gates(report, gates)


def _against_kind(against: str | None) -> str | None:
    from ganedit.judges.fidelity import is_stats_file

    if against is None:
        return None
    path = Path(against)
    if path.is_dir() and not (path / "config.json").is_file():  # a BigGAN-deep folder is a model
        return "images"
    if path.is_file() and is_stats_file(path):
        return "stats"
    return "model"


def evaluate(model: str, run: EvalRun, settings: EvalSettings, against_kind, gates, device) -> dict:
    """Load what the run names, check every metric and gate before any sampling, and score."""
    from ganedit.generators.formats import resolve_model_path
    from ganedit.generators.sampling import num_classes, resolution, resolve_classes
    from ganedit.judges.evaluation import feature_space
    from ganedit.judges.fidelity import STANDARD_METRICS, load_inception, load_stats, minimum_samples
    from ganedit.judges.scorecard import default_samples, evaluate_model, figure_names, plan_metrics
    from ganedit.store import zoo

    metrics = plan_metrics(settings, against=against_kind, judge=run.judge is not None, feature=run.feature is not None,
                           judge_class=run.class_name is not None, clip=run.clip is not None)  # fmt: skip
    space = feature_space(run.judge) if run.judge is not None else ("clip" if run.clip is not None else None)
    names = figure_names(metrics, space, against_kind)
    for gate in gates:
        if gate.metric not in names:
            raise GaneditError(
                f"gate on {gate.metric}: not computed by this eval (it computes {', '.join(sorted(names))}); "
                "ask for it with --metrics"
            )
    standard = [name for name in metrics if name in STANDARD_METRICS]
    inception = load_inception(run.inception_weights, device) if standard or run.save_stats else None
    bundle = ganedit.load_model(resolve_model_path(model), device=device)
    G = bundle.generator
    recipe = (bundle.metadata.get("provenance") or {}).get("recipe") or {}
    settings.samples = settings.samples or default_samples(
        metrics, recipe.get("eval_samples"), model in zoo.REGISTRY and zoo.REGISTRY[model].embedded
    )
    if settings.seed is None:
        settings.seed = (recipe.get("settings") or {}).get("seed", 0)
    against, against_name = None, run.against
    if against_kind == "images":
        from ganedit.engine.sources import load_image_folder

        against = load_image_folder(run.against, resolution(G))  # uint8: only Inception reads it
        for name in standard:
            if name != "is" and len(against) < minimum_samples(name):
                raise GaneditError(f"--against {run.against} has {len(against)} images; {name} needs at least "
                                   f"{minimum_samples(name)}: add images to the folder")  # fmt: skip
    elif against_kind == "stats":
        against = load_stats(run.against, inception)
    elif against_kind == "model":
        against = ganedit.load_model(resolve_model_path(run.against), device=device).generator
    class_index = None
    if run.class_name is not None and num_classes(G):
        class_index = resolve_classes([run.class_name], bundle.class_names, num_classes(G))[0]
    judge = judge_class = feature = None
    if run.judge is not None:
        from ganedit.cli.judging import judge_for
        from ganedit.judges import resolve_label

        label = run.feature or run.class_name
        judge, index = judge_for(run.judge, run.labels, label, device)
        feature = index if run.feature is not None else None
        judge_class = resolve_label(judge, run.class_name) if run.class_name is not None else None
    clip = concept_scores = None
    if run.clip is not None:
        from ganedit.judges.clip import load_clip
        from ganedit.procedures.text_unlearn import clip_scores

        clip = load_clip(run.clip, device)

        def concept_scores(images):
            return clip_scores(clip, images, run.concept)

    perceptual = None
    if "lpips" in metrics:
        from ganedit.judges.perceptual import load_perceptual

        perceptual = load_perceptual(run.lpips, device)
    stderr_console().print(f"scoring {settings.samples} fixed latents (seed {settings.seed}) ...")
    report = evaluate_model(
        G, settings, metrics, against=against, against_name=str(against_name), class_index=class_index, judge=judge,
        judge_class=judge_class, feature=feature, clip=clip, concept_scores=concept_scores, perceptual=perceptual,
        inception=inception,
    )  # fmt: skip
    report = {"model": model, "against": run.against, "judge": getattr(judge, "name", None), "written": [],
              "metrics": metrics, **report}  # fmt: skip
    if run.save_stats:
        from ganedit.generators.sampling import generate, sample_latents
        from ganedit.judges.fidelity import ReferenceStats, reference_from_images

        if isinstance(against, ReferenceStats):
            raise GaneditError("--save-stats with --against STATS: the statistics exist already")
        if against is None or not hasattr(against, "shape"):
            source = against if against is not None else G
            count = settings.samples
            labels = torch.arange(count) % num_classes(source) if num_classes(source) else None
            against = generate(source, sample_latents(source, count, settings.seed), labels)
            against_name = f"{run.against or model} samples"
        report["_stats"] = reference_from_images(inception, against, str(against_name))
    return report


def _print_report(report: dict) -> None:
    from rich.table import Table

    table = Table(title=f"eval {report['model']} ({report['samples']} fixed latents, seed {report['seed']})")
    for column in ("figure", "value", "samples", "against", "feature space"):
        table.add_column(column)
    for name, figure in report["figures"].items():
        value = figure["value"]
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        if "std" in figure:
            shown += f" ± {figure['std']:.2g}"
        add_plain_row(table, name, shown, figure["samples"], figure["reference"] or "", figure["feature_space"])
    stdout_console().print(table)
    for path in report.get("written", []):
        stdout_console().print(f"wrote {path}")
