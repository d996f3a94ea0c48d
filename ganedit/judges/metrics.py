"""Measures of an edit (evaluation.md): Frechet distance and KID between feature sets, PUL.

Feature sets come from a judge's feature space (the toy oracle's penultimate layer, a classifier's
pooled features); the same functions serve any of them. Every figure should be reported with its
sample counts, and compared only at equal counts.
"""

import torch


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets [N, F] and [M, F], in float64.

    ||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)), where the last trace is computed as
    tr((S_a^(1/2) S_b S_a^(1/2))^(1/2)): the matrix inside is symmetric positive semi-definite, so both
    square roots come from symmetric eigen-decompositions (eigenvalues clamped at 0 against round-off).
    """
    a, b = features_a.detach().double(), features_b.detach().double()
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need two feature sets [N>=2, F] of equal width, got {list(a.shape)} and {list(b.shape)}")
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    root_a = _psd_sqrt(cov_a)
    cross_trace = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    distance = (mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross_trace
    return float(distance.clamp(min=0))


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix."""
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    return eigenvectors @ torch.diag(eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T


def kernel_inception_distance(
    features_a: torch.Tensor, features_b: torch.Tensor, subsets: int = 50, subset_size: int = 500, seed: int = 0
) -> float:
    """KID (Binkowski et al. 2018) as torch-fidelity computes it: the unbiased MMD^2 with the cubic
    polynomial kernel k(x, y) = (x.y / F + 1)^3, averaged over `subsets` random subsets of
    min(subset_size, N, M) features of each set (seeded, so a figure is reproducible)."""
    a, b = features_a.detach().double(), features_b.detach().double()
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need two feature sets [N>=2, F] of equal width, got {list(a.shape)} and {list(b.shape)}")
    m = min(subset_size, len(a), len(b))
    rng = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        x = a[torch.randperm(len(a), generator=rng)[:m]]
        y = b[torch.randperm(len(b), generator=rng)[:m]]
        k_xx, k_yy, k_xy = ((p @ q.T / a.shape[1] + 1) ** 3 for p, q in ((x, x), (y, y), (x, y)))
        off_diagonal = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
        values.append(off_diagonal - 2 * k_xy.mean())
    return float(torch.stack(values).mean())


def percentage_of_unlearning(negatives_before: int, negatives_after: int) -> float:
    """PUL (Adapt-then-Unlearn): 100 * (before - after) / before, counts on the same fixed latents.

    Negative when the edit made the feature more frequent; NaN when there was nothing to unlearn.
    """
    if negatives_before == 0:
        return float("nan")
    return 100.0 * (negatives_before - negatives_after) / negatives_before
