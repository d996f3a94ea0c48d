"""Evaluation helpers the procedures share (evaluation.md): a judge's verdicts on images before and
after an edit, on the same latents: PUL, class shares, and the Frechet / kernel distances in the judge's
feature space. Those are named for their space (`fd_oracle`, `kd_resnet50`; `feature_space`), never
FID / KID, which are Inception's (ganedit.judges.fidelity)."""

import re

import torch
from torch import nn

from ganedit.errors import GaneditError


@torch.no_grad()
def judged(judge: nn.Module, images: torch.Tensor, batch_size: int = 250) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted class [N], features [N, F]) of images in [-1, 1], on the judge's device, returned on CPU."""
    device = next(judge.parameters()).device
    classes, features = [], []
    for chunk in images.split(batch_size):
        logits, feats = judge.logits_and_features(chunk.to(device))
        classes.append(logits.argmax(dim=1).cpu())
        features.append(feats.float().cpu())
    return torch.cat(classes), torch.cat(features)


def feature_space(judge_name: str) -> str:
    """The name a judge's feature space goes by in figure names: `oracle` for the toy oracle (any head),
    `oracle_strict` for the strict one, else the judge's name made an identifier (`resnet50`, `places365_resnet18`)."""
    if judge_name.startswith("toy-oracle-strict") or judge_name.split(":")[0] == "toy-strict":
        return "oracle_strict"
    if judge_name.startswith("toy-oracle") or judge_name.split(":")[0] == "toy":
        return "oracle"
    if judge_name.startswith("detector("):  # ganedit.judges.detector: CLIP image embeddings
        return "clip"
    base = judge_name.split("=")[0].split(":")[0]
    return re.sub(r"[^0-9a-zA-Z]+", "_", base).strip("_").lower() or "judge"


def judge_comparison(
    judge: nn.Module, feature: int, before: torch.Tensor, after: torch.Tensor, reference: torch.Tensor
) -> dict:
    """PUL, class shares and Frechet / kernel distances in the judge's features (`fd_<space>_before`, ...,
    `kd_<space>_after`; see feature_space) of images before and after an edit (same latents).

    The distances' reference: the images in `reference` (the original model's, other latents) that the
    judge says lack the feature, at most len(before) of them.
    """
    from ganedit.judges.metrics import frechet_distance, kernel_inception_distance, percentage_of_unlearning

    classes_before, features_before = judged(judge, before)
    classes_after, features_after = judged(judge, after)
    reference_classes, reference_features = judged(judge, reference)
    positives = reference_features[reference_classes != feature][: len(before)]
    if len(positives) < 2:
        raise GaneditError("the judge finds the feature in nearly every sample; there are no positives to compare with")
    negatives_before, negatives_after = int((classes_before == feature).sum()), int((classes_after == feature).sum())
    labels = list(getattr(judge, "labels", range(int(max(classes_before.max(), classes_after.max())) + 1)))

    def shares(classes):
        return {str(labels[i]): round(float((classes == i).float().mean()), 4) for i in range(len(labels))}

    name = getattr(judge, "name", type(judge).__name__)
    space = feature_space(name)
    return {
        "judge": name,
        "feature": str(labels[feature]),
        "negatives_before": negatives_before,
        "negatives_after": negatives_after,
        "pul": percentage_of_unlearning(negatives_before, negatives_after),
        "reference_positives": len(positives),
        "feature_space": f"{name} features",
        f"fd_{space}_before": frechet_distance(features_before, positives),
        f"fd_{space}_after": frechet_distance(features_after, positives),
        f"kd_{space}_before": kernel_inception_distance(features_before, positives),
        f"kd_{space}_after": kernel_inception_distance(features_after, positives),
        "class_shares_before": shares(classes_before),
        "class_shares_after": shares(classes_after),
    }
