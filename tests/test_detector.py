"""The few-shot detector learned from negatives (ganedit.judges.detector), on synthetic embeddings: what it
flags, its threshold, its refusals, and its round trip through provenance. Its use by `ganedit unlearn
--negatives DIR` on the toy world is in test_toy_unlearn_detector.py."""

import pytest
import torch
from torch import nn

from ganedit.errors import GaneditError
from ganedit.judges.detector import (
    MIN_NEGATIVES,
    DetectorSettings,
    auc,
    domain_gap,
    fit_detector,
    from_state,
)

pytestmark = pytest.mark.usefixtures("one_thread")

DIM = 16


class FlatEncoder(nn.Module):
    """An 'encoder' whose embedding is the (unit-normalised) first DIM pixel values: images carry their
    embeddings directly, so the tests control the geometry."""

    name = "flat"

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1), requires_grad=False)

    @property
    def device(self):
        return self.anchor.device

    def encode_images(self, images):
        x = images.flatten(1)[:, :DIM]
        return x / x.norm(dim=1, keepdim=True)


def as_images(points: torch.Tensor) -> torch.Tensor:
    return torch.cat([points, torch.zeros(len(points), 3 * 4 * 4 - DIM)], dim=1).view(-1, 3, 4, 4)


def cluster(count: int, centre: int, seed: int, spread: float = 0.3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    points = spread * torch.randn(count, DIM, generator=g)
    points[:, centre] += 1.0
    points[:, 0] += 1.0  # every image shares a common component, as real embeddings do
    return as_images(points)


def pool(count: int, feature_share: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's samples: a share of them show the feature (cluster 1), the rest spread over 2..7."""
    g = torch.Generator().manual_seed(seed)
    shows = torch.rand(count, generator=g) < feature_share
    images = torch.cat([cluster(1, 1 if s else 2 + i % 6, seed * 1000 + i) for i, s in enumerate(shows.tolist())])
    return images, shows


def test_the_detector_finds_the_feature_among_the_models_samples_at_the_stated_recall():
    negatives = cluster(30, 1, seed=0)
    samples, _ = pool(600, 0.1, seed=1)
    detector = fit_detector(FlatEncoder(), negatives, samples, "star", DetectorSettings(recall=0.9))
    test, shows = pool(1000, 0.1, seed=2)
    flagged = detector(test).argmax(dim=1) == 1
    recall = (flagged & shows).sum() / shows.sum()
    precision = (flagged & shows).sum() / flagged.sum()
    assert recall >= 0.8 and precision >= 0.8, (recall, precision)
    assert detector.labels == ["not star", "star"] and detector.name == "detector(flat)"
    # the stricter positives filter flags everything the counting threshold flags, and more
    strict = detector.may_show(test)
    assert bool((strict | ~flagged).all()) and strict.sum() >= flagged.sum()
    assert detector.info["crossfit_auc"] > 0.9 and len(detector.info["negative_scores"]) == 30


def test_the_threshold_moves_with_the_asked_recall():
    negatives, (samples, _) = cluster(30, 1, seed=0), pool(600, 0.1, seed=1)
    loose = fit_detector(FlatEncoder(), negatives, samples, "star", DetectorSettings(recall=0.95))
    tight = fit_detector(FlatEncoder(), negatives, samples, "star", DetectorSettings(recall=0.5))
    assert loose.threshold < tight.threshold
    held_out = cluster(200, 1, seed=9)
    assert (loose(held_out).argmax(1) == 1).float().mean() > (tight(held_out).argmax(1) == 1).float().mean()


def test_too_few_negatives_are_refused_naming_the_minimum():
    samples, _ = pool(200, 0.1, seed=1)
    with pytest.raises(GaneditError, match=f"at least {MIN_NEGATIVES}"):
        fit_detector(FlatEncoder(), cluster(MIN_NEGATIVES - 1, 1, seed=0), samples, "star")


def test_negatives_like_the_models_own_samples_are_refused():
    samples, _ = pool(400, 0.1, seed=1)
    look_alike, _ = pool(30, 0.1, seed=5)  # the model's own kind of samples: nothing to learn
    with pytest.raises(GaneditError, match="cannot tell"):
        fit_detector(FlatEncoder(), look_alike, samples, "star")


def test_a_feature_most_samples_show_is_refused():
    negatives = cluster(30, 1, seed=0)
    samples, _ = pool(400, 0.8, seed=1)  # the "feature" is the majority: the PU assumption fails
    with pytest.raises(GaneditError, match="cannot tell|flags"):
        fit_detector(FlatEncoder(), negatives, samples, "star")


def test_state_round_trip_scores_the_same():
    negatives, (samples, _) = cluster(30, 1, seed=0), pool(300, 0.1, seed=1)
    detector = fit_detector(FlatEncoder(), negatives, samples, "star")
    again = from_state(detector.state(), FlatEncoder())
    test, _ = pool(100, 0.1, seed=3)
    assert torch.allclose(detector(test), again(test), atol=1e-4)
    assert torch.equal(detector.may_show(test), again.may_show(test))


def test_domain_gap_is_about_one_for_look_alikes_and_large_across_a_gap():
    encoder = FlatEncoder()
    samples = encoder.encode_images(pool(400, 0.1, seed=1)[0])
    same = encoder.encode_images(pool(30, 0.1, seed=4)[0])
    points = 0.05 * torch.randn(30, DIM, generator=torch.Generator().manual_seed(4))
    points[:, 0] -= 1.0  # opposite to the component every sample shares: far from all of them
    far = encoder.encode_images(as_images(points))
    assert domain_gap(same, samples) < 1.5 < domain_gap(far, samples)


def test_auc_is_the_mann_whitney_statistic():
    assert auc(torch.tensor([3.0, 4.0]), torch.tensor([1.0, 2.0])) == 1.0
    assert auc(torch.tensor([1.0]), torch.tensor([1.0])) == 0.5
    assert auc(torch.tensor([1.0, 3.0]), torch.tensor([2.0])) == 0.5
