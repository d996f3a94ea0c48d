"""Elastic weight consolidation for GAN fine-tuning (Kirkpatrick et al. 2017; for GANs, Li et al. 2020,
"Few-shot image generation with elastic weight consolidation").

The penalty (lambda / 2) sum_p F_p (theta_p - theta*_p)^2 holds each parameter near its starting value
theta* in proportion to F_p, the diagonal of the Fisher information of the starting generator, estimated
from D's logit on G's own samples (D's logit plays the log-likelihood): F_p = E_z[(d D(G(z)) / d theta_p)^2],
squared per sample. Which parameters the penalty covers is the caller's choice, by name (`G.named_parameters()`
names), so each procedure states what its EWC holds. Usable as a Trainer's `extra_generator_loss`.
"""

import torch
from torch import nn


def fisher_diagonal(
    G: nn.Module, D: nn.Module, names: list[str], samples: int, seed: int, c: torch.Tensor | None = None
) -> list[torch.Tensor]:
    """F_p = mean over `samples` generated images of (d D(G(z), c) / d theta_p)^2, for G's parameters `names`.

    One backward pass per sample, since the square is taken per sample. c: the one-hot label [1, c_dim]
    every sample is drawn and judged with (conditional models), else None. Synthesis noise is the stored
    (const) noise, so F depends on the seed only. G's and D's requires_grad flags are restored.
    """
    named = dict(G.named_parameters())
    missing = [name for name in names if name not in named]
    if missing:
        raise ValueError(f"G has no parameters {missing[:3]}")
    params = [named[name] for name in names]
    fisher = [torch.zeros_like(p) for p in params]
    device = params[0].device
    rng = torch.Generator().manual_seed(seed)
    G_requires, D_requires = [p.requires_grad for p in G.parameters()], [p.requires_grad for p in D.parameters()]
    G.requires_grad_(False)
    D.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    label = c.to(device) if c is not None else None
    try:
        for _ in range(samples):
            z = torch.randn([1, G.z_dim], generator=rng).to(device)
            logit = D(G(z, label, noise_mode="const"), label).sum()
            grads = torch.autograd.grad(logit, params)
            torch._foreach_add_(fisher, [g.square() / samples for g in grads])
    finally:
        for p, flag in zip(G.parameters(), G_requires, strict=True):
            p.requires_grad_(flag)
        for p, flag in zip(D.parameters(), D_requires, strict=True):
            p.requires_grad_(flag)
    return fisher


class EWCPenalty:
    """(lambda / 2) sum_p F_p (theta_p - theta*_p)^2 over G's parameters `names`, anchored at G's values now.

    Called with the G being trained (the Trainer's `extra_generator_loss(G)`); G must have the same
    parameter names. The anchor and F live on G's device.
    """

    def __init__(self, G: nn.Module, names: list[str], fisher: list[torch.Tensor], ewc_lambda: float):
        named = dict(G.named_parameters())
        if len(fisher) != len(names) or any(f.shape != named[n].shape for f, n in zip(fisher, names, strict=True)):
            raise ValueError("expected one Fisher tensor per parameter, of its shape")
        self.names, self.fisher, self.ewc_lambda = list(names), fisher, ewc_lambda
        self.anchor = [named[name].detach().clone() for name in names]

    def __call__(self, G: nn.Module) -> torch.Tensor:
        named = dict(G.named_parameters())
        terms = [
            (f * (named[name] - a).square()).sum()
            for name, f, a in zip(self.names, self.fisher, self.anchor, strict=True)
        ]
        return (self.ewc_lambda / 2) * torch.stack(terms).sum()
