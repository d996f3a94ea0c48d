"""Adapt-then-Unlearn (Tiwary et al., TMLR 2025; methods.md section 3).

A user shows samples with an unwanted feature (the *negatives*). Stage 1 adapts K copies of the
pre-trained GAN to the negatives, each under an EWC penalty that keeps it near the original; the
adapted parameters minus the original ones point towards "more of the feature". Stage 2 fine-tunes
the original GAN on *positives* (its own samples without the feature) with a repulsion term that is
largest at the adapted parameters. The baseline `extrapolate` steps the other way in parameter space
at once: theta = theta_G - gamma * mean_k (theta_N,k - theta_G).

As the reference runs the stages: both are StyleGAN2 training (non-saturating loss, lazy R1, path-length
regularisation weight 2 every 4 steps, style mixing 0.9); each starts G, G_ema and D from the published
G_ema and D; G_ema follows G with the reference's fixed per-step decay (rosinality's
0.5 ** (32 / 10,000), a half-life of 312.5 steps: 5 kimg at batch 16), with no ramp-up; the adapted
model kept from stage 1, and the model stage 2 ships, is G_ema. EWC covers the parameters of the
reference's `convs` (every synthesis layer after the 4 px one: kernels, style affines, noise strengths,
biases), and the repulsion acts on the trained G.

The parameter distance. The default (`distance = "mean"`) is well defined:

    d(theta) = (1 / K) sum_k mean_i (theta_i - theta_N,k,i)^2      over all P trainable parameters of G

a mean squared difference over every parameter element, averaged over the K adapted models. Since
mean_k (x - a_k)^2 = (x - mean_k a_k)^2 + mean_k (a_k - mean_k a_k)^2, d is computed exactly from one
flat tensor, the adapted models' mean, plus a constant: K models cost what one does, and nothing is read
from disk during training. The repulsion uses d in units of its starting value, d_hat = d(theta) /
d(theta_G), so its strength does not depend on how far a model's adaptations moved (which varies by
orders of magnitude between models):

    el2:  L_G = L_adv + weight * exp(-alpha * d_hat)       (default; the reference's weight is 100)
    nl2:  L_G = L_adv - gamma * d_hat
    il2:  L_G = L_adv + gamma / d_hat

`distance = "reference"` is the reference code's, so the paper's printed alpha / gamma apply as printed:
d_ref(theta) = (K / 2P') sum_p sum_k mean_p (theta_p - theta_N,k,p)^2 over the P' parameter tensors, a
per-tensor mean (a 3-element bias weighs as much as a 512x512x3x3 kernel) times K / 2P' (K where it
meant 1 / K), not normalised: d_hat = d_ref. When the per-tensor means are alike, d_ref is about
(K^2 / 2) * d, so the paper's alpha_ref corresponds to ganedit's alpha = alpha_ref * (K^2 / 2) * d(theta_G)
(gamma likewise; 1 / that factor for il2). The report gives d(theta_G) for the conversion.
"""

import copy
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from ganedit.engine import distributed
from ganedit.engine.adversarial import Trainer, TrainingConfig, training_config
from ganedit.engine.ewc import EWCPenalty, fisher_diagonal
from ganedit.engine.loop import Progress, check_stage, read_resume, run_identity, run_steps, write_resume
from ganedit.engine.sources import GeneratedImages, ImageBatches
from ganedit.errors import GaneditError
from ganedit.generators.ops import freeze
from ganedit.generators.sampling import num_classes
from ganedit.settings import check, derived_seed, setting
from ganedit.store.state_file import state_mismatch

METHODS = ("repulsion", "extrapolate")
REPULSIONS = ("el2", "nl2", "il2")
DISTANCES = ("mean", "reference")
RESUME_FORMAT = "ganedit.procedures.unlearn-resume"


@dataclass
class UnlearnSettings:
    """Every parameter of the procedure: the command line's options and a recipe's [settings] are these."""

    method: str = setting("repulsion", "Adapt then unlearn with repulsion, or the parameter-space baseline.",
                          choices=METHODS)  # fmt: skip
    repulsion: str = setting("el2", "Repulsion term of stage 2.", choices=REPULSIONS)
    adapted_models: int = setting(5, "K, adapted models, each from a random subset of the negatives.", min=1)
    subset_fraction: float = setting(0.5, "Share of the negatives in each subset (when negatives-per-model is 0).",
                                     min=0, max=1, min_open=True)  # fmt: skip
    negatives_per_model: int = setting(0, "Negatives each adapted model trains on, disjoint where the pool allows "
                                       "(the reference mines 300 per model; 0: a subset-fraction of one pool).",
                                       min=0)  # fmt: skip
    adapt_steps: int = setting(1000, "Stage 1 steps per adapted model.", min=0)
    steps: int = setting(1000, "Stage 2 steps.", min=0)
    batch_size: int = setting(16, "Images per step.", min=1)
    lr: float = setting(0.002, "Adam learning rate of both stages (StyleGAN2's; betas 0, 0.99).", min=0,
                        min_open=True)  # fmt: skip
    ewc_lambda: float = setting(5e8, "lambda of the EWC penalty (methods.md).", min=0)
    fisher_samples: int = setting(32, "Generated samples the Fisher diagonal is estimated from.", min=1)
    distance: str = setting("mean", "Repulsion distance: mean squared difference over all parameters, in units "
                            "of its start (d / d0); or the reference code's per-tensor d_ref, so the paper's "
                            "alpha / gamma apply as printed (d_ref is about K^2/2 * d).",
                            choices=DISTANCES)  # fmt: skip
    alpha: float = setting(5.0, "el2: exp(-alpha * d).", min=0, min_open=True)
    gamma: float = setting(1.0, "nl2 / il2 strength; extrapolate: the step along -(theta_N - theta_G).", min=0)
    weight: float = setting(100.0, "el2: the term's weight (the reference's fixed 100).", min=0)
    r1_gamma: float = setting(10.0, "R1 weight of both stages.", min=0)
    pl_weight: float = setting(2.0, "Path-length regularisation weight of both stages (0: off).", min=0)
    style_mixing: float = setting(0.9, "Style-mixing probability of both stages.", min=0, max=1)
    ema_kimg: float = setting(5.0, "G_ema half-life in kimg, both stages, no ramp-up (the reference's 312.5 steps "
                              "at batch 16; 0: G_ema is G).", min=0)  # fmt: skip
    min_keep_fraction: float = setting(0.02, "Positives filter: stop if fewer of G's samples lack the feature.",
                                       min=0, max=1)  # fmt: skip
    seed: int = setting(0, "Same seed, same result (on the same device).")

    def __post_init__(self):
        check(self)

    def training(self, seed: int) -> TrainingConfig:
        """The engine's settings of either stage (the reference runs both alike)."""
        return training_config(self, seed, ema_rampup=None)


# ---------------------------------------------------------------------------------------------------
# Parameters as one flat vector


def trainable(G: nn.Module) -> list[torch.Tensor]:
    """The parameters the distance and the extrapolation run over: all of G's (mapping and synthesis)."""
    return list(G.parameters())


def flat(params: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.reshape(-1) for p in params])


@torch.no_grad()
def set_flat(params: list[torch.Tensor], vector: torch.Tensor) -> None:
    torch._foreach_copy_(
        params, [v.view_as(p) for v, p in zip(vector.split([p.numel() for p in params]), params, strict=True)]
    )


# ---------------------------------------------------------------------------------------------------
# Stage 1: EWC


EWC_LAYER = re.compile(r"b(\d+)\.conv[01]\.")


def ewc_parameters(G: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Every parameter of the synthesis layers above 4 px, b{res}.conv0/conv1 for res > 4: kernel, style
    affine weight and bias, noise strength, bias. These are rosinality's `convs`, what the reference's
    EWC covers; the 4 px conv (rosinality's `conv1`), the const input, toRGB and mapping stay free."""
    return [
        (name, p)
        for name, p in G.synthesis.named_parameters()
        if (match := EWC_LAYER.match(name)) and int(match[1]) > 4
    ]


def ewc_names(G: nn.Module) -> list[str]:
    """The EWC parameters' names in G (ganedit.engine.ewc takes names of G.named_parameters())."""
    return [f"synthesis.{name}" for name, _ in ewc_parameters(G)]


# ---------------------------------------------------------------------------------------------------
# Stage 2: repulsion


class Repulsion:
    """The repulsion term of stage 2 on d_hat (module docstring), adapted models resident as one mean.

    Both distances are sum_i w_i (theta_i - theta_N,k,i)^2 averaged over k, with an element weight w:
    1 / P for "mean" (then divided by its starting value), and (K^2 / 2P') / n_p for an element of a
    tensor of n_p elements for "reference" (`sizes` gives the tensors' sizes, in order).
    """

    def __init__(
        self,
        original: torch.Tensor,
        adapted: list[torch.Tensor],
        kind: str,
        alpha: float,
        gamma: float,
        weight: float,
        distance: str = "mean",
        sizes: list[int] | None = None,
    ):
        if kind not in REPULSIONS:
            raise GaneditError(f"unknown repulsion {kind!r}; choose one of: {', '.join(REPULSIONS)}")
        if distance not in DISTANCES:
            raise GaneditError(f"unknown distance {distance!r}; choose one of: {', '.join(DISTANCES)}")
        stacked = torch.stack([a.to(original.device) for a in adapted])
        self.mean = stacked.mean(dim=0)  # [P]
        if distance == "mean":
            self.element_weight = 1.0 / original.numel()
        else:
            sizes = sizes if sizes is not None else [original.numel()]
            K = len(adapted)
            per_tensor_mean = torch.cat([torch.full([n], 1.0 / n, device=original.device) for n in sizes])
            self.element_weight = per_tensor_mean * (K * K / (2 * len(sizes)))
        # mean_k sum_i w_i (a_k,i - mean_i)^2, the constant part of the distance
        self.spread = float(((stacked - self.mean).square().mean(dim=0) * self.element_weight).sum())
        self.kind, self.alpha, self.gamma, self.weight = kind, alpha, gamma, weight
        self.initial = self.raw_distance(original).item()
        if not self.initial > 0:
            raise GaneditError("the adapted models equal the original; stage 1 did not move (raise adapt-steps or lr)")
        self.unit = self.initial if distance == "mean" else 1.0  # d_hat = d / d0, or d_ref as printed

    def raw_distance(self, theta: torch.Tensor) -> torch.Tensor:
        """mean_k sum_i w_i (theta_i - theta_N,k,i)^2: d(theta), or d_ref(theta)."""
        return ((theta - self.mean).square() * self.element_weight).sum() + self.spread

    def __call__(self, G: nn.Module) -> torch.Tensor:
        d_hat = self.raw_distance(flat(trainable(G))) / self.unit
        if self.kind == "el2":
            return self.weight * torch.exp(-self.alpha * d_hat)
        if self.kind == "nl2":
            return -self.gamma * d_hat
        return self.gamma / d_hat


@torch.no_grad()
def extrapolate(G: nn.Module, adapted: list[torch.Tensor], gamma: float) -> nn.Module:
    """The baseline: a copy of G with theta = theta_G - gamma * mean_k (theta_N,k - theta_G)."""
    result = copy.deepcopy(G)
    params = trainable(result)
    theta = flat(params)
    mean = torch.stack([a.to(theta.device) for a in adapted]).mean(dim=0)
    set_flat(params, theta - gamma * (mean - theta))
    return result


# ---------------------------------------------------------------------------------------------------
# The procedure


@dataclass
class UnlearnResult:
    generator: nn.Module  # the unlearned G (stage 2's G_ema, or the extrapolated G)
    discriminator: nn.Module | None  # stage 2's D (None for extrapolate)
    adapted: list[torch.Tensor]  # the K adapted models as flat parameter vectors (CPU)
    info: dict = field(default_factory=dict)  # initial distance, stage losses, positives' source


def negative_subsets(count: int, settings: UnlearnSettings) -> list[torch.Tensor]:
    """K index sets into the `count` negatives, seeded.

    With `negatives_per_model` n: disjoint sets of n where count >= K * n (the reference mines fresh
    negatives for each adapted model), else K random sets of min(n, count). Without: K random
    `subset_fraction` shares of the pool (at least one image each).
    """
    rng = torch.Generator().manual_seed(derived_seed(settings.seed, "negative-subsets"))
    K, n = settings.adapted_models, settings.negatives_per_model
    if n and count >= K * n:
        order = torch.randperm(count, generator=rng)
        return [order[k * n : (k + 1) * n].sort().values for k in range(K)]
    size = min(n, count) if n else max(1, round(count * settings.subset_fraction))
    return [torch.randperm(count, generator=rng)[:size].sort().values for _ in range(K)]


def unlearn(
    G: nn.Module,
    D: nn.Module | None,
    negatives: torch.Tensor | None,
    settings: UnlearnSettings,
    *,
    is_negative=None,
    positives: torch.Tensor | None = None,
    adapted: list[torch.Tensor] | None = None,
    checkpoint: Path | str | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    progress: Progress | None = None,
) -> UnlearnResult:
    """Adapt-then-Unlearn `G` (a StyleGAN2 generator; its EMA weights) with its discriminator `D`.

    negatives:    [N, 3, H, W] in [-1, 1], images showing the feature (not needed when `adapted` is given).
    is_negative:  images -> bool mask of those showing the feature (a judge); filters G's samples into
                  the stage-2 positives unless `positives` ([M, 3, H, W]) are given.
    adapted:      flat parameter vectors of previously adapted models: stage 1 is skipped.
    checkpoint:   resume file, written atomically every `checkpoint_every` steps and on Ctrl-C;
                  with `resume`, the run continues from it (it must be from the same run).
    G and D are not modified; the result holds new modules.
    """
    if not hasattr(G, "synthesis") or not hasattr(G, "mapping"):
        raise GaneditError("unlearn works on StyleGAN2 generators; this model is not one")
    if num_classes(G):
        raise GaneditError("unlearn works on unconditional StyleGAN2 generators; this one is class-conditional")
    needs_D = settings.method == "repulsion" or adapted is None
    if D is None and needs_D:
        raise GaneditError(
            "this checkpoint has no discriminator, and adaptation needs one; give a training checkpoint that "
            "includes D (rosinality .pt with 'd', NVIDIA .pkl with 'D', or a ganedit file written with D)"
        )
    if adapted is None and (negatives is None or len(negatives) == 0):
        raise GaneditError("no negatives: give images showing the feature, or previously adapted models")
    if settings.method == "repulsion" and positives is None and is_negative is None:
        raise GaneditError("stage 2 needs positives: give a folder of them or a judge that recognises the feature")
    device = next(G.parameters()).device
    G = freeze(copy.deepcopy(G))
    D = copy.deepcopy(D).requires_grad_(False) if D is not None else None
    inputs = [t for t in (negatives if adapted is None else None, positives) if t is not None]
    identity = run_identity(asdict(settings), [*inputs, *G.state_dict().values()])
    original = flat(trainable(G)).detach()
    state = _read_resume(checkpoint, identity, settings, original) if resume else None

    # Stage 1: K adapted models (or the given ones).
    finished = list(adapted) if adapted is not None else list(state["adapted"]) if state else []
    info: dict = {"stage_1": "given" if adapted is not None else "trained"}
    if adapted is None:
        subsets = negative_subsets(len(negatives), settings)
        ewc = None
        for k in range(len(finished), settings.adapted_models):
            if ewc is None:  # the Fisher diagonal and the anchor are the original model's, shared by all K
                names = ewc_names(G)
                fisher = fisher_diagonal(G, D, names, settings.fisher_samples, derived_seed(settings.seed, "fisher"))
                ewc = EWCPenalty(G, names, fisher, settings.ewc_lambda)
                info["fisher_mean"] = float(torch.stack([f.mean() for f in fisher]).mean())
            trainer = Trainer(
                copy.deepcopy(G),
                copy.deepcopy(D),
                settings.training(derived_seed(settings.seed, f"adapt-{k}")),
            )
            batches = ImageBatches(
                negatives[subsets[k]].to(device),
                settings.batch_size,
                torch.Generator().manual_seed(derived_seed(settings.seed, f"adapt-data-{k}")),
                flip=True,
            )
            if state and state.get("stage") == ("adapt", k):
                trainer.load_state_dict(state["trainer"], str(checkpoint))
                batches.load_state_dict(state["source"], str(checkpoint))

            def save(k=k, trainer=trainer, batches=batches):
                _write_resume(checkpoint, identity, ("adapt", k), finished, trainer, batches)

            losses = _train(
                trainer, lambda batches=batches: (next(batches), None), settings.adapt_steps, ewc,
                save if checkpoint else None, checkpoint_every, progress, f"adapt {k + 1}/{settings.adapted_models}",
            )  # fmt: skip
            info[f"adapt_{k}_losses"] = losses
            finished.append(flat(trainable(trainer.G_ema)).detach().cpu())  # the reference keeps G_ema
            state = None
            if checkpoint and checkpoint_every:  # 0: a resume file only when interrupted
                _write_resume(checkpoint, identity, ("adapted", k), finished, None, None)

    if settings.method == "extrapolate":
        result = extrapolate(G, finished, settings.gamma)
        info["initial_distance"] = float((torch.stack(finished).to(device) - original).square().mean())
        return UnlearnResult(result, None, [a.cpu() for a in finished], info)

    # Stage 2: the original G on positives, with repulsion from the adapted models.
    repulsion = Repulsion(
        original, finished, settings.repulsion, settings.alpha, settings.gamma, settings.weight,
        settings.distance, [p.numel() for p in trainable(G)],
    )  # fmt: skip
    info["initial_distance"] = repulsion.initial
    trainer = Trainer(copy.deepcopy(G), copy.deepcopy(D), settings.training(derived_seed(settings.seed, "unlearn")))
    data_rng = torch.Generator().manual_seed(derived_seed(settings.seed, "unlearn-data"))
    if positives is not None:
        source = ImageBatches(positives.to(device), settings.batch_size, data_rng, flip=True)
        next_batch = lambda: (next(source), None)  # noqa: E731
        info["positives"] = f"{len(positives)} given images"
    else:
        source = GeneratedImages(
            [G],  # already a frozen private copy
            None,
            settings.batch_size,
            data_rng,
            judge=lambda images: images,
            keep=lambda images: ~is_negative(images).to(torch.bool),
            min_keep_fraction=settings.min_keep_fraction,
        )
        next_batch = lambda: (next(source)[0], None)  # noqa: E731
        info["positives"] = "generated by the original G, filtered by the judge"
    if state and state.get("stage") == ("unlearn", 0):
        trainer.load_state_dict(state["trainer"], str(checkpoint))
        source.load_state_dict(state["source"], str(checkpoint))

    def save():
        _write_resume(checkpoint, identity, ("unlearn", 0), finished, trainer, source)

    info["unlearn_losses"] = _train(
        trainer,
        next_batch,
        settings.steps,
        repulsion,
        save if checkpoint else None,
        checkpoint_every,
        progress,
        "unlearn",
    )
    info["final_distance"] = float(repulsion.raw_distance(flat(trainable(trainer.G_ema))) / repulsion.initial)
    info["distance"] = settings.distance
    if distributed.active():
        info["processes"] = distributed.processes(trainer.G_ema)  # the processes ended in sync (checked)
    return UnlearnResult(trainer.G_ema.eval(), trainer.D.eval(), [a.cpu() for a in finished], info)


def _train(trainer, next_batch, steps, extra, save, save_every, progress, label) -> dict:
    """run_steps with a progress row named `label`."""
    task = progress.task(label, steps, trainer.step) if progress is not None else None
    return run_steps(
        trainer, next_batch, steps, extra_generator_loss=extra, save=save, save_every=save_every,
        progress=progress, task=task,
    )  # fmt: skip


def _write_resume(path, identity: str, stage: tuple, finished: list[torch.Tensor], trainer, source) -> None:
    write_resume(path, RESUME_FORMAT, identity, stage, trainer, source, adapted=[a.detach().cpu() for a in finished])


def _read_resume(path, identity: str, settings: UnlearnSettings, original: torch.Tensor) -> dict:
    """The resume file's state, its stage and adapted models (vectors like `original`) checked."""
    state = read_resume(path, RESUME_FORMAT, identity, "unlearn")
    K = settings.adapted_models
    check_stage(path, state["stage"], {"adapt": K, "adapted": K, "unlearn": 1})
    adapted = state.get("adapted")

    def like_original(a) -> bool:
        return isinstance(a, torch.Tensor) and (a.shape, a.dtype) == (original.shape, original.dtype)

    if not isinstance(adapted, list) or len(adapted) > K or not all(like_original(a) for a in adapted):
        raise state_mismatch(
            str(path), f"its adapted models are not up to {K} {original.dtype} vectors of {original.numel()} parameters"
        )
    return state


# ---------------------------------------------------------------------------------------------------
# Evaluation (evaluation.md): PUL on fixed latents, quality against positives, in the judge's features


def evaluate_unlearning(
    before: nn.Module, after: nn.Module, judge: nn.Module, feature: int, samples: int = 1000, seed: int = 0
) -> dict:
    """PUL and quality of an unlearned generator, judged by `judge` (the feature is its class `feature`).

    Both generators draw the same `samples` fixed latents (seed `seed`, stored noise, no truncation).
    PUL counts the judge's argmax == feature before and after. Quality: FID and KID in the judge's
    feature space of each generator's samples against a reference set of positives: the original
    generator's samples, from other latents (seed derived for "reference"), that the judge says lack the
    feature (at most `samples` of them). Also the share of every judge class before and after (collateral changes).
    """
    from ganedit.generators.sampling import generate, sample_latents
    from ganedit.judges.evaluation import judge_comparison

    z = sample_latents(before, samples, seed)
    reference = generate(before, sample_latents(before, 2 * samples, derived_seed(seed, "reference")))
    return {
        "samples": samples,
        "seed": seed,
        **judge_comparison(judge, feature, generate(before, z), generate(after, z), reference),
    }


def model_from_flat(G: nn.Module, vector: torch.Tensor) -> nn.Module:
    """A copy of G with its trainable parameters set from a flat vector (an adapted model)."""
    model = copy.deepcopy(G)
    set_flat(trainable(model), vector.to(next(model.parameters()).device))
    return model


@torch.no_grad()
def mine_negatives(G: nn.Module, judge: nn.Module, feature: int, count: int, seed: int, max_tries: int = 50):
    """`count` samples of G (seeded latents, stored noise) that the judge's argmax calls class `feature`.

    Gives up with a one-line error after max_tries * count samples.
    """
    from ganedit.generators.sampling import generate, sample_latents

    found, made, batch = [], 0, 256
    judge_device = next(judge.parameters()).device
    for attempt in range(max_tries * count // batch + 1):
        images = generate(G, sample_latents(G, batch, derived_seed(seed, f"mine-{attempt}")))
        made += batch
        found.extend(images[judge(images.to(judge_device)).argmax(dim=1).cpu() == feature])
        if len(found) >= count:
            return torch.stack(found[:count])
    name = judge.labels[feature] if hasattr(judge, "labels") else feature
    raise GaneditError(
        f"the judge finds {name!r} in only {len(found)} of {made} samples; give --negatives DIR, or a lower --mine"
    )
