"""A few-shot detector of a feature, learned from a folder of examples: unlearning needs no classifier.

Given N images showing what must go (the negatives) and a pool of U samples of the model itself, the
detector is positive-unlabelled learning (Elkan & Noto, "Learning classifiers from only positive and
unlabeled data", KDD 2008) on a frozen image encoder:

1. Embed both sets with CLIP's image tower (unit-norm embeddings; `toy-clip` on the toy world, an
   open_clip model such as ViT-B-32 for real ones).
2. Fit an L2-regularised logistic regression g(x) = sigmoid(w . x + b): the negatives labelled 1 against
   the model's samples labelled 0, the two sets weighted equally.
3. Threshold. Every image of both sets is also scored by a classifier fitted without it (`folds`-fold
   cross-fitting). The threshold t is the (1 - recall) quantile of the negatives' cross-fitted scores, so
   a share `recall` of unseen examples of the feature is flagged; s(x) = w . x + b >= t flags x. Stage
   2's positives are filtered at a stricter threshold (`filter_recall`, 0.98): a sample the detector is
   unsure of is better left out of the positives than taught as one (toy star: 1.9 % of the kept
   positives were stars at recall 0.9).

The assumption: the feature is a minority of the model's samples, so the unlabelled pool is mostly
without it. Under it Elkan & Noto's g(x) = c * p(feature | x) holds (c the labelled share), and ranking
by g ranks by p(feature | x); the samples of the pool the detector flags are the model's own examples of
the feature. It fails, with a one-line error, when the negatives cannot be told from the model's samples
(cross-fitted AUC below MIN_AUC: the folder shows nothing the model's samples lack, or shows it in most
of them) or when the threshold flags more than MAX_FLAGGED of the pool (the minority assumption is
broken). When the folder's images lie far from every model sample in the encoder's space (a domain gap:
crisp renderings of what the model draws as blobs, photographs for a cartoon model), `domain_gap` says
how far, and the command line warns.

As a judge the detector has two labels, ["not <feature>", "<feature>"], and logits [0, s(x) - t], so
code that takes a judge (argmax == feature, Frechet distance in its features, grids) takes it too.
"""

import math
from dataclasses import dataclass

import torch
from torch import nn

from ganedit.errors import GaneditError

MIN_NEGATIVES = 8
MIN_AUC = 0.75
MAX_FLAGGED = 0.5
FORMAT = "ganedit.feature-detector"


@dataclass
class DetectorSettings:
    recall: float = 0.9  # share of unseen negatives the threshold flags (counting: PUL, grids)
    filter_recall: float = 0.98  # the same for the stricter threshold that filters stage 2's positives
    folds: int = 5  # cross-fitting folds for the threshold and the checks
    l2: float = 1e-3  # weight of (1/2) |w|^2 in the logistic loss
    steps: int = 200  # L-BFGS iterations


class FeatureDetector(nn.Module):
    """s(x) = w . E(x) + b on a frozen encoder E; flags x when s(x) >= threshold."""

    def __init__(
        self, encoder, weight: torch.Tensor, bias: float, threshold: float, feature: str, info: dict,
        filter_threshold: float | None = None,
    ):  # fmt: skip
        super().__init__()
        self.encoder = encoder
        self.register_buffer("weight", weight.float().reshape(-1))
        self.bias, self.threshold, self.feature, self.info = float(bias), float(threshold), feature, info
        self.filter_threshold = float(filter_threshold if filter_threshold is not None else threshold)
        self.labels = [f"not {feature}", feature]
        self.name = f"detector({encoder.name})"

    @torch.no_grad()
    def logits_and_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embeddings = self.encoder.encode_images(images.to(self.weight.device)).float()
        margin = embeddings @ self.weight + self.bias - self.threshold
        return torch.stack([torch.zeros_like(margin), margin], dim=1), embeddings

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits_and_features(images)[0]

    def may_show(self, images: torch.Tensor) -> torch.Tensor:
        """The stricter test that keeps stage 2's positives clean: s(x) >= filter_threshold (bool [N])."""
        margin = self.logits_and_features(images)[0][:, 1]
        return margin >= self.filter_threshold - self.threshold

    def state(self) -> dict:
        """What provenance keeps: enough to rebuild the detector with `from_state` and the same encoder."""
        return {
            "format": FORMAT,
            "encoder": self.encoder.name,
            "feature": self.feature,
            "weight": [round(v, 6) for v in self.weight.tolist()],
            "bias": self.bias,
            "threshold": self.threshold,
            "filter_threshold": self.filter_threshold,
            **self.info,
        }


def from_state(state: dict, encoder) -> FeatureDetector:
    if state.get("format") != FORMAT:
        raise GaneditError("not a saved feature detector (provenance without 'detector')")
    own = ("format", "encoder", "feature", "weight", "bias", "threshold", "filter_threshold")
    info = {k: v for k, v in state.items() if k not in own}
    weight = torch.tensor(state["weight"])
    return FeatureDetector(encoder, weight, state["bias"], state["threshold"], state["feature"], info,
                           state.get("filter_threshold"))  # fmt: skip


@torch.no_grad()
def embed(encoder, images: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    """Unit-norm embeddings [N, D] (CPU, float32) of images in [-1, 1] (or uint8 [0, 255])."""
    chunks = []
    for chunk in images.split(batch_size):
        if chunk.dtype == torch.uint8:
            chunk = chunk.float() / 127.5 - 1
        chunks.append(encoder.encode_images(chunk.to(encoder.device)).float().cpu())
    return torch.cat(chunks)


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float, steps: int) -> tuple[torch.Tensor, float]:
    """argmin_w,b of the class-balanced mean logistic loss + (l2 / 2) |w|^2 (L-BFGS); y in {0, 1}."""
    weight = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
    x, y = x.double(), y.double()
    balance = torch.where(y > 0, 0.5 / y.sum(), 0.5 / (1 - y).sum())  # each class weighs one half
    optimiser = torch.optim.LBFGS([weight, bias], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        logits = x @ weight + bias
        loss = (balance * nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")).sum()
        loss = loss + 0.5 * l2 * weight.square().sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return weight.detach().float(), float(bias.detach())


def auc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """P(score of a positive > score of a negative), ties counting one half (the Mann-Whitney U)."""
    greater = (positive[:, None] > negative[None, :]).double().mean()
    ties = (positive[:, None] == negative[None, :]).double().mean()
    return float(greater + 0.5 * ties)


def fit_detector(
    encoder,
    negatives: torch.Tensor,
    samples: torch.Tensor,
    feature: str,
    settings: DetectorSettings | None = None,
    seed: int = 0,
) -> FeatureDetector:
    """The detector of `feature` from the negatives [N, 3, H, W] and the model's samples [U, 3, H, W].

    Raises a one-line GaneditError when there are fewer than MIN_NEGATIVES negatives, when the two sets
    cannot be told apart (cross-fitted AUC < MIN_AUC), or when the threshold flags more than MAX_FLAGGED
    of the model's samples.
    """
    settings = settings or DetectorSettings()
    if len(negatives) < MIN_NEGATIVES:
        raise GaneditError(
            f"only {len(negatives)} negatives; the detector needs at least {MIN_NEGATIVES} images showing the feature"
        )
    x_neg, x_pool = embed(encoder, negatives), embed(encoder, samples)
    x = torch.cat([x_neg, x_pool])
    y = torch.cat([torch.ones(len(x_neg)), torch.zeros(len(x_pool))])
    folds = _folds(len(x_neg), len(x_pool), settings.folds, seed)
    crossfit = torch.empty(len(x))
    for held in folds:
        train = torch.ones(len(x), dtype=torch.bool)
        train[held] = False
        w, b = fit_logistic(x[train], y[train], settings.l2, settings.steps)
        crossfit[held] = x[held] @ w + b
    neg_scores, pool_scores = crossfit[: len(x_neg)], crossfit[len(x_neg) :]
    separation = auc(neg_scores, pool_scores)
    if separation < MIN_AUC:
        raise GaneditError(
            f"the detector cannot tell the {len(x_neg)} negatives from the model's own samples (cross-fitted AUC "
            f"{separation:.2f} < {MIN_AUC}): the folder shows nothing the model's samples lack, or shows what most "
            "of them show; give images of the feature only, or --judge SPEC --feature LABEL"
        )
    threshold = float(torch.quantile(neg_scores, 1 - settings.recall))
    filter_threshold = min(threshold, float(torch.quantile(neg_scores, 1 - settings.filter_recall)))
    flagged = float((pool_scores >= threshold).float().mean())
    if flagged > MAX_FLAGGED:
        raise GaneditError(
            f"the detector flags {100 * flagged:.0f} % of the model's samples as showing the feature (more than "
            f"{100 * MAX_FLAGGED:.0f} %): unlearning assumes it is a minority; give a folder of the feature only"
        )
    weight, bias = fit_logistic(x, y, settings.l2, settings.steps)
    info = {
        "negatives": len(x_neg),
        "pool": len(x_pool),
        "recall_target": settings.recall,
        "crossfit_auc": round(separation, 4),
        "pool_flagged": round(flagged, 4),
        "negative_scores": [round(v, 4) for v in (x_neg @ weight + bias).tolist()],
        "domain_gap": round(domain_gap(x_neg, x_pool), 4),
        "method": "PU logistic regression on CLIP image embeddings (Elkan & Noto 2008), threshold at the "
        f"{100 * (1 - settings.recall):.0f}th percentile of the negatives' cross-fitted scores",
    }
    return FeatureDetector(encoder, weight, bias, threshold, feature, info, filter_threshold)


def domain_gap(x_neg: torch.Tensor, x_pool: torch.Tensor) -> float:
    """How far the negatives lie from the model's samples: the median over negatives of the cosine distance
    to the nearest sample, over the median of the samples' own nearest-neighbour distance (about 1 when
    the folder looks like the model's samples; well above 1 across a domain gap)."""
    to_pool = (1 - x_neg @ x_pool.T).min(dim=1).values.median()
    within = 1 - x_pool @ x_pool.T
    within.fill_diagonal_(math.inf)
    return float(to_pool / within.min(dim=1).values.median().clamp_min(1e-6))


def _folds(n_neg: int, n_pool: int, folds: int, seed: int) -> list[torch.Tensor]:
    """Index sets into cat([negatives, pool]) for cross-fitting, each with a share of both sets."""
    rng = torch.Generator().manual_seed(seed)
    neg = torch.randperm(n_neg, generator=rng)
    pool = torch.randperm(n_pool, generator=rng) + n_neg
    count = min(folds, n_neg)
    return [torch.cat([neg[k::count], pool[k::count]]) for k in range(count)]


@dataclass
class LearnedDetector:
    detector: FeatureDetector
    pool: torch.Tensor  # [U, 3, H, W] the model's samples it was fitted on (CPU, [-1, 1])
    pool_scores: torch.Tensor  # [U] s(x) - threshold of each (>= 0: flagged)

    def top_flagged(self, count: int) -> torch.Tensor:
        """Up to `count` pool samples the detector flags, highest score first (to top up a folder)."""
        order = self.pool_scores.argsort(descending=True)[:count]
        return self.pool[order[self.pool_scores[order] >= 0]]


def learn_detector(
    G: nn.Module,
    negatives: torch.Tensor,
    feature: str,
    encoder,
    pool: int = 1000,
    settings: DetectorSettings | None = None,
    seed: int = 0,
) -> LearnedDetector:
    """fit_detector on `pool` of G's own samples (seeded latents, stored noise, no truncation)."""
    from ganedit.generators.sampling import generate, sample_latents
    from ganedit.settings import derived_seed

    samples = generate(G, sample_latents(G, pool, derived_seed(seed, "detector-pool")))
    detector = fit_detector(encoder, negatives, samples, feature, settings, seed)
    scores = torch.cat([detector(chunk)[:, 1].cpu() for chunk in samples.split(250)])
    return LearnedDetector(detector, samples, scores)
