"""`ganedit eval` in Python: score a saved generator in the field's terms (evaluation.md).

`evaluate_model(G, EvalSettings(...), against=..., judge=..., ...)` draws `samples` fixed latents (seed
`seed`, stored noise, no truncation; a conditional model's `class_index`, else every class in turn) and
returns every figure with its sample counts and its feature space:

- standard metrics on Inception features (ganedit.judges.fidelity): fid, kid, prc (precision / recall),
  dc (density / coverage) against a reference (real images, reference statistics, or `against`'s
  samples), and is;
- with a judge: `accuracy` (its label `judge_class` among the samples), the share of `feature`, and,
  against the original model on the same latents, `pul` with the judge-space Frechet / kernel distances
  to the original's positives (`fd_<space>`, `kd_<space>`, exactly as the editing commands compute them);
- with CLIP: the concept's CLIP score (and, against the original, before / after and their W1);
- `lpips`: intra-class diversity, the mean pairwise perceptual distance over the first samples.

Against the original model (`against` a generator), "before" figures are the original's and the plain
ones the evaluated model's: `ganedit eval no-star.safetensors --against toy-stylegan2 --judge toy
--feature star` gives the PUL and fd_oracle that `ganedit unlearn` reported for the same latents.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ganedit.errors import GaneditError
from ganedit.judges.evaluation import feature_space
from ganedit.judges.fidelity import (
    PAPER_FID_SAMPLES,
    STANDARD_METRICS,
    InceptionFeatures,
    ReferenceStats,
    minimum_samples,
)
from ganedit.settings import check, derived_seed, setting

JUDGE_METRICS = ("accuracy", "pul", "fd")
METRICS = (*STANDARD_METRICS, *JUDGE_METRICS, "clip", "lpips")
DEFAULT_SAMPLES = 1000  # judge-, CLIP- and LPIPS-space figures without a standard metric


@dataclass
class EvalSettings:
    """What `ganedit eval` computes; the fields are its options (`samples` is `--samples`)."""

    metrics: list[str] = setting([], "Metrics, comma-separated or repeated: " + ", ".join(METRICS)
                                 + " [default: what the inputs allow]", metavar="NAMES")  # fmt: skip
    samples: int | None = setting(None, "Fixed latents to score [default: the model's recipe's eval_samples, "
                                  "else 500 for toy models, 50,000 with a standard metric, else 1,000].",
                                  min=2, metavar="N")  # fmt: skip
    seed: int | None = setting(None, "Seed of the fixed latents [default: the model's recipe's seed, else 0].",
                               metavar="S")  # fmt: skip
    diversity_samples: int = setting(100, "Samples whose pairs the lpips diversity averages.", min=2)

    def __post_init__(self):
        check(self)
        self.metrics = [name.strip().lower() for item in self.metrics for name in item.split(",") if name.strip()]
        for name in self.metrics:
            if name not in METRICS:
                raise GaneditError(f"--metrics: unknown metric {name!r}; choose from {', '.join(METRICS)}")


def plan_metrics(
    settings: EvalSettings,
    *,
    against: str | None,
    judge: bool,
    feature: bool,
    judge_class: bool,
    clip: bool,
) -> list[str]:
    """The metrics to compute: those asked for, each checked against what the inputs allow (one-line
    error naming what is missing), or by default every one the inputs allow (standard ones only against
    real images or statistics). `against`: None, "model", "images" or "stats"."""
    needs = {
        "fid": (against is not None, "--against MODEL2, DIR or STATS"),
        "kid": (against is not None, "--against MODEL2, DIR or STATS"),
        "prc": (against is not None, "--against MODEL2, DIR or STATS"),
        "dc": (against is not None, "--against MODEL2, DIR or STATS"),
        "is": (True, ""),
        "accuracy": (judge and judge_class, "--judge SPEC and --class NAME"),
        "pul": (judge and feature and against == "model", "--judge SPEC --feature LABEL and --against MODEL2"),
        "fd": (against == "model" and (judge and feature or clip), "--against MODEL2 with --judge/--feature or --clip"),
        "clip": (clip, "--clip SPEC and --concept TEXT"),
        "lpips": (True, ""),
    }
    if settings.metrics:
        for name in settings.metrics:
            allowed, what = needs[name]
            if not allowed:
                raise GaneditError(f"--metrics {name} needs {what}")
        return list(dict.fromkeys(settings.metrics))
    chosen = [name for name in ("accuracy", "pul", "fd", "clip") if needs[name][0]]
    if against in ("images", "stats"):
        chosen += ["fid", "kid", "prc", "dc"]
    if not chosen:
        raise GaneditError(
            "nothing to evaluate: give --against DIR|STATS (FID, KID, ...), --judge with --class or --feature, "
            "--clip with --concept, or --metrics (is, lpips)"
        )
    return chosen


def figure_names(metrics: list[str], space: str | None, against: str | None) -> set[str]:
    """The figure names `evaluate_model` reports for these metrics (what a gate may name)."""
    names = set()
    for metric in metrics:
        names |= {
            "fid": {"fid"}, "kid": {"kid"}, "is": {"is"}, "prc": {"precision", "recall"},
            "dc": {"density", "coverage"}, "accuracy": {"accuracy"}, "lpips": {"lpips"},
            "pul": {"pul", "negatives_before", "negatives_after"},
            "fd": {f"fd_{space}", f"kd_{space}", f"fd_{space}_before", f"kd_{space}_before"},
            "clip": {"clip_score"} | ({"clip_score_before", "clip_score_w1"} if against == "model" else set()),
        }[metric]  # fmt: skip
    return names


def default_samples(metrics: list[str], recipe_samples: int | None, toy: bool) -> int:
    if recipe_samples is not None:
        return recipe_samples
    if toy:
        return 500
    return PAPER_FID_SAMPLES if set(metrics) & set(STANDARD_METRICS) else DEFAULT_SAMPLES


@torch.no_grad()
def evaluate_model(
    generator: nn.Module,
    settings: EvalSettings,
    metrics: list[str],
    *,
    against: nn.Module | torch.Tensor | ReferenceStats | None = None,
    against_name: str = "",
    class_index: int | None = None,
    judge: nn.Module | None = None,
    judge_class: int | None = None,
    feature: int | None = None,
    clip: nn.Module | None = None,
    concept_scores: Callable[[torch.Tensor], torch.Tensor] | None = None,
    perceptual: nn.Module | None = None,
    inception: InceptionFeatures | None = None,
) -> dict:
    """Every asked figure of `generator` (see the module docstring) as {name: {value, samples, reference,
    feature_space}}, with the latents' count and seed. `concept_scores(images) -> [N]` is the CLIP score
    of the concept under `clip` (text-unlearn's `clip_scores` with its prompt)."""
    from ganedit.generators.sampling import generate, num_classes, sample_latents
    from ganedit.judges.clip import image_embeddings, wasserstein_1d
    from ganedit.judges.evaluation import judge_comparison, judged
    from ganedit.judges.fidelity import reference_from_images, standard_metrics
    from ganedit.judges.metrics import frechet_distance, kernel_inception_distance
    from ganedit.judges.perceptual import mean_pairwise_distance

    samples, seed = settings.samples, settings.seed or 0
    if samples is None:
        raise GaneditError("EvalSettings.samples: say how many latents to score")
    original = against if isinstance(against, nn.Module) else None

    def classes(count):  # conditional generators: the class asked for, else every class in turn
        if class_index is not None:
            return torch.full([count], class_index)
        return torch.arange(count) % num_classes(generator) if num_classes(generator) else None

    z = sample_latents(original if original is not None else generator, samples, seed)
    images = generate(generator, z, classes(samples))
    figures: dict[str, dict] = {}

    def add(name, value, reference=None, space="", count=samples):
        figures[name] = {"value": value, "samples": count, "reference": reference, "feature_space": space}

    before = reference = None
    if original is not None:
        before = generate(original, z, classes(samples))
        count = 2 * samples if judge is not None else samples  # a judge filters the reference: draw more
        reference = generate(original, sample_latents(original, count, derived_seed(seed, "reference")), classes(count))
    space = f"{judge.name} features" if judge is not None else ""
    if "accuracy" in metrics:
        predicted, _ = judged(judge, images)
        add("accuracy", float((predicted == judge_class).float().mean()), space=f"{judge.name} labels")
    comparison = None
    if judge is not None and feature is not None and original is not None and {"pul", "fd"} & set(metrics):
        comparison = judge_comparison(judge, feature, before, images, reference)
        positives = f"{comparison['reference_positives']} {against_name} samples without '{comparison['feature']}'"
        if "pul" in metrics:
            labels = f"{judge.name} labels, same latents of {against_name}"
            add("pul", comparison["pul"], reference=labels, space=f"{judge.name} labels")
            add("negatives_before", comparison["negatives_before"], reference=against_name, space=judge.name)
            add("negatives_after", comparison["negatives_after"], space=judge.name)
        if "fd" in metrics:
            name = feature_space(judge.name)
            for kind in ("fd", "kd"):
                add(f"{kind}_{name}", comparison[f"{kind}_{name}_after"], positives, space)
                add(f"{kind}_{name}_before", comparison[f"{kind}_{name}_before"], positives, space)
    clip_name = getattr(clip, "name", "CLIP")
    if "clip" in metrics:
        scores = concept_scores(images)
        add("clip_score", round(float(scores.mean()), 3), space=f"{clip_name} (100 x cosine)")
        if original is not None:
            scores_before = concept_scores(before)
            add("clip_score_before", round(float(scores_before.mean()), 3), against_name, f"{clip_name}")
            add("clip_score_w1", round(wasserstein_1d(scores_before, scores), 3), against_name, f"{clip_name}")
    if "fd" in metrics and comparison is None:  # CLIP's image embeddings, as text-unlearn without a judge
        reference_features = image_embeddings(clip, reference)
        features, features_before = image_embeddings(clip, images), image_embeddings(clip, before)
        where, space = f"{len(reference)} {against_name} samples", f"{clip_name} image embeddings"
        add("fd_clip", frechet_distance(features, reference_features), where, space)
        add("fd_clip_before", frechet_distance(features_before, reference_features), where, space)
        add("kd_clip", kernel_inception_distance(features, reference_features), where, space)
        add("kd_clip_before", kernel_inception_distance(features_before, reference_features), where, space)
    if "lpips" in metrics:
        count = min(settings.diversity_samples, samples)
        value = mean_pairwise_distance(perceptual, images[:count])
        add("lpips", value, space=f"{getattr(perceptual, 'name', 'perceptual')}, all pairs", count=count)
    standard = [name for name in metrics if name in STANDARD_METRICS]
    if standard:
        if isinstance(against, ReferenceStats):
            stats = against
        elif isinstance(against, torch.Tensor):
            stats = reference_from_images(inception, against, against_name)
        elif original is not None:
            positives = reference
            if judge is not None and feature is not None:
                positives = reference[judged(judge, reference)[0] != feature][:samples]
            stats = reference_from_images(inception, positives, f"{against_name} samples")
        else:
            stats = None
        for name in standard:
            if name != "is" and stats.samples < minimum_samples(name):
                raise GaneditError(f"{name} needs at least {minimum_samples(name)} reference images; "
                                   f"{stats.source} has {stats.samples}")  # fmt: skip
            if samples < minimum_samples(name):
                raise GaneditError(f"{name} needs at least {minimum_samples(name)} samples; give --samples")
        pool, logits = inception(images)
        values = standard_metrics(standard, pool, logits, stats)
        where = f"{stats.samples} images of {stats.source}" if stats is not None else None
        space = f"{inception.name} pool3 (torch-fidelity, {inception.resize}, uint8)"
        for name in ("fid", "kid", "precision", "recall", "density", "coverage"):
            if name in values:
                add(name, values[name], where, space)
        if "kid" in values:
            figures["kid"].update(std=values["kid_std"], subset_size=values["kid_subset_size"])
        if "is" in values:
            add("is", values["is"], space=f"{inception.name} logits, {values['is_splits']} splits")
            figures["is"]["std"] = values["is_std"]
    report = {"samples": samples, "seed": seed, "figures": figures}
    if comparison is not None:
        report["class_shares_before"] = comparison["class_shares_before"]
        report["class_shares"] = comparison["class_shares_after"]
    return report
