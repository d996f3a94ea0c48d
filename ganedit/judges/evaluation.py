"""Evaluation helpers the procedures share (evaluation.md): a judge's verdicts on images before and
after an edit, on the same latents: PUL, class shares, and FID / KID in the judge's feature space."""

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


def judge_comparison(
    judge: nn.Module, feature: int, before: torch.Tensor, after: torch.Tensor, reference: torch.Tensor
) -> dict:
    """PUL, class shares and FID / KID (judge features) of images before and after an edit (same latents).

    The FID / KID reference: the images in `reference` (the original model's, other latents) that the
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

    return {
        "judge": getattr(judge, "name", type(judge).__name__),
        "feature": str(labels[feature]),
        "negatives_before": negatives_before,
        "negatives_after": negatives_after,
        "pul": percentage_of_unlearning(negatives_before, negatives_after),
        "reference_positives": len(positives),
        "fid_before": frechet_distance(features_before, positives),
        "fid_after": frechet_distance(features_after, positives),
        "kid_before": kernel_inception_distance(features_before, positives),
        "kid_after": kernel_inception_distance(features_after, positives),
        "class_shares_before": shares(classes_before),
        "class_shares_after": shares(classes_after),
    }
