"""Adversarial fine-tuning of a StyleGAN2 pair: the training step that `unlearn` and `merge` run.

The losses and schedule of StyleGAN2 training (Karras et al. 2020; methods.md sections 2 and 3):
- non-saturating logistic loss: L_D = softplus(D(G(z))) + softplus(-D(x)), L_G = softplus(-D(G(z)));
- R1 on the real images (gamma 10) lazily every 16 steps, path-length regularisation (weight 2)
  lazily every 4 steps, each on an optimiser step of its own and scaled by its interval;
- style mixing with probability 0.9;
- Adam, lr 0.002, betas (0, 0.99), rescaled for the lazy regularisation;
- G_ema, a moving average of G with a half-life of 10 kimg: the generator a run ships.
Optionally (`discriminator_warmup`, not StyleGAN2's) the first steps train D alone, so that a D
inherited from another run learns the new "real" images before its gradients move G.
A procedure adds its own generator terms (EWC penalty, repulsion, anchors) as `extra_generator_loss`.
The caller supplies the "real" images every step (negatives, positives, a parent generator's outputs).

Randomness: every random number comes from the trainer's CPU torch.Generator, so the seed fixes a run
and a saved state resumes it exactly. The synthesis network draws its per-pixel noise from the global
RNG, so each step seeds that from the trainer's generator inside `torch.random.fork_rng`: the noise is
reproducible too and the caller's global RNG is left as it was.
"""

import copy
import dataclasses
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ganedit.engine import distributed
from ganedit.errors import GaneditError
from ganedit.generators.ops import autocast, freeze
from ganedit.generators.registry import config_dict, load_exact_state
from ganedit.generators.sampling import seeded_noise
from ganedit.generators.stylegan2 import NOISE_MODES
from ganedit.store.state_file import read_state_file, state_mismatch, write_state_file

STATE_FORMAT = "ganedit.adversarial-training-state"
STATE_VERSION = 1
STATE_FILE_VERSION = 2  # of the files save_state writes: 2 is sealed with a sha256 (ganedit.store.state_file)
AUTOCAST_DTYPES = ("bfloat16",)


@dataclass
class TrainingConfig:
    batch_size: int = 16  # images per step, real and generated alike
    lr: float = 0.002  # Adam learning rate, before the lazy-regularisation rescaling
    betas: tuple[float, float] = (0.0, 0.99)  # Adam betas, before the rescaling
    r1_gamma: float = 10.0  # R1 weight, 0 = no R1
    r1_every: int = 16  # R1 on steps that are multiples of this
    pl_weight: float = 2.0  # path-length weight, 0 = no path-length regularisation
    pl_every: int = 4  # path-length regularisation on steps that are multiples of this
    pl_decay: float = 0.01  # decay of the running mean path length
    pl_batch_shrink: int = 2  # the path-length batch is batch_size // pl_batch_shrink
    style_mixing: float = 0.9  # probability of mixing two latents at a random crossover
    ema_kimg: float = 10.0  # half-life of G_ema in thousands of images, 0 = G_ema is G
    ema_rampup: float | None = None  # half-life at most this fraction of the images seen so far (ADA: 0.05)
    w_avg_beta: float = 0.995  # decay of G's tracked w_avg (the truncation centre)
    noise_mode: str = "random"  # synthesis noise while training
    seed: int = 0  # seeds every random number of the run
    autocast: str | None = None  # "bfloat16" runs the adversarial terms under autocast (GPU), None = fp32
    discriminator_warmup: int = 0  # the first this many steps train D only (G, its w_avg and G_ema stay)

    def __post_init__(self):
        problems = []
        if self.batch_size < 1:
            problems.append(f"batch_size must be at least 1, got {self.batch_size}")
        if self.discriminator_warmup < 0:
            problems.append(f"discriminator_warmup must be 0 or more, got {self.discriminator_warmup}")
        if self.r1_every < 1 or self.pl_every < 1 or self.pl_batch_shrink < 1:
            problems.append(
                f"r1_every, pl_every and pl_batch_shrink must be at least 1, got "
                f"{self.r1_every}, {self.pl_every}, {self.pl_batch_shrink}"
            )
        if not 0 <= self.style_mixing <= 1:
            problems.append(f"style_mixing is a probability in [0, 1], got {self.style_mixing}")
        if self.noise_mode not in NOISE_MODES:
            problems.append(f"noise_mode must be one of {', '.join(NOISE_MODES)}, got {self.noise_mode!r}")
        if self.autocast is not None and self.autocast not in AUTOCAST_DTYPES:
            problems.append(f"autocast must be None or one of {', '.join(AUTOCAST_DTYPES)}, got {self.autocast!r}")
        if problems:
            raise GaneditError("bad training settings: " + "; ".join(problems))


def _floats(losses: dict[str, torch.Tensor]) -> dict[str, float]:
    values = torch.stack([value.detach().float() for value in losses.values()]).tolist()  # one host sync
    return dict(zip(losses, values, strict=True))


# ---------------------------------------------------------------------------------------------------
# Losses


def generator_loss(D: torch.nn.Module, fake: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
    """Non-saturating logistic loss of G: mean softplus(-D(G(z)))."""
    return F.softplus(-D(fake, c)).mean()


def discriminator_loss(
    D: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor, c: torch.Tensor | None = None
) -> torch.Tensor:
    """Logistic loss of D: mean softplus(D(G(z))) + mean softplus(-D(x))."""
    return F.softplus(D(fake, c)).mean() + F.softplus(-D(real, c)).mean()


def r1_penalty(D: torch.nn.Module, real: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): mean over the batch of |d D(x) / d x|^2 at the real images.

    The training loss is (gamma / 2) times this.
    """
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(real, c).sum(), real, create_graph=True)
    return grad.square().sum(dim=[1, 2, 3]).mean()


def path_length_penalty(
    G: torch.nn.Module,
    ws: torch.Tensor,
    pl_mean: torch.Tensor,
    decay: float,
    rng: torch.Generator,
    noise_mode: str = "random",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Path-length regularisation (StyleGAN2 section 3.2): (penalty, updated running mean).

    The path length of a sample is |J_w^T y| for a random image-space direction y scaled to unit
    variance per pixel; the penalty is the mean squared deviation from the running mean `pl_mean`,
    which moves towards the batch mean by `decay`. `ws` must be part of G's graph (from G.mapping).
    """
    img = G.synthesis(ws, noise_mode=noise_mode)
    direction = torch.randn(img.shape, generator=rng).to(img.device) / math.sqrt(img.shape[2] * img.shape[3])
    (grad,) = torch.autograd.grad((img * direction).sum(), ws, create_graph=True)
    lengths = grad.square().sum(dim=2).mean(dim=1).sqrt()  # [N]
    pl_mean = pl_mean.lerp(lengths.mean().detach(), decay)
    return (lengths - pl_mean).square().mean(), pl_mean


def mixed_latents(
    G: torch.nn.Module,
    z1: torch.Tensor,
    z2: torch.Tensor,
    c: torch.Tensor | None,
    prob: float,
    rng: torch.Generator,
) -> torch.Tensor:
    """ws [N, num_ws, w_dim] from z1; with probability `prob`, rows from a random crossover on
    (1 .. num_ws - 1, the same for the whole batch) come from z2 instead (style mixing)."""
    ws = G.mapping(z1, c)
    if prob > 0 and torch.rand([], generator=rng).item() < prob:
        crossover = int(torch.randint(1, G.num_ws, [], generator=rng))
        ws = torch.cat([ws[:, :crossover], G.mapping(z2, c)[:, crossover:]], dim=1)
    return ws


def ema_beta(config: TrainingConfig, images_seen: int = 0, world_size: int = 1) -> float:
    """Per-step decay of G_ema: half of G_ema is replaced after ema_kimg thousand images.

    With `ema_rampup` (StyleGAN2-ADA), the half-life is at most that fraction of the images seen so far,
    so G_ema of a short fine-tuning run follows G instead of staying at the starting point.
    A step of `world_size` data-parallel processes sees batch_size * world_size images.
    """
    if config.ema_kimg <= 0:
        return 0.0
    half_life = config.ema_kimg * 1000
    if config.ema_rampup is not None:
        half_life = min(half_life, images_seen * config.ema_rampup)
    return 0.5 ** (config.batch_size * world_size / max(half_life, 1e-8))


def lazy_adam(module: torch.nn.Module, config: TrainingConfig, reg_every: int | None) -> torch.optim.Adam:
    """Adam for a network regularised every `reg_every` steps (None = never).

    Lazy regularisation takes k + 1 optimiser steps per k training steps; StyleGAN2 (appendix C)
    rescales lr by c = k / (k + 1) and the betas to beta ** c to keep the same per-step dynamics.
    """
    c = reg_every / (reg_every + 1) if reg_every else 1.0
    betas = (config.betas[0] ** c, config.betas[1] ** c)
    return torch.optim.Adam(module.parameters(), lr=config.lr * c, betas=betas)


# ---------------------------------------------------------------------------------------------------
# The training loop


def training_config(settings, seed: int, **overrides) -> TrainingConfig:
    """The engine's settings for a procedure: the fields its settings share with TrainingConfig by name
    (batch_size, lr, r1_gamma, pl_weight, style_mixing, ema_kimg, ...), the stage's seed, then overrides."""
    shared = {
        f.name: getattr(settings, f.name) for f in dataclasses.fields(TrainingConfig) if hasattr(settings, f.name)
    }
    return TrainingConfig(**{**shared, "seed": seed, **overrides})


class Trainer:
    """G, D, G_ema, their optimisers, the step counter, the running path length and the RNG.

    G and D are trained in place; G_ema starts as a copy of G.

    Several processes (`torchrun`, any torch.distributed backend): when the default process group is
    initialised, the trainer is data-parallel the way DDP is: every process starts from rank 0's
    weights, draws its own latents (seed + rank), is given its own real batch by the caller, and the
    gradients of every optimiser step are averaged over the processes before the step (all-reduced as
    one flat tensor per network, as StyleGAN3's training loop does; DDP's bucketed hooks do not support
    the double backward of R1 and path length). The tracked w_avg and the running path length are
    averaged too, so all processes hold identical G, D, G_ema and optimiser states throughout.
    """

    def __init__(self, G: torch.nn.Module, D: torch.nn.Module, config: TrainingConfig):
        self.G, self.D, self.config = G.train(), D.train(), config
        self.G_ema = freeze(copy.deepcopy(G))
        self.device = next(G.parameters()).device
        self.opt_G = lazy_adam(G, config, config.pl_every if config.pl_weight > 0 else None)
        self.opt_D = lazy_adam(D, config, config.r1_every if config.r1_gamma > 0 else None)
        self.step = 0
        self.pl_mean = torch.zeros([], device=self.device)
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        self.rng = torch.Generator().manual_seed(config.seed + self.rank)
        if self.world_size > 1:  # every process starts from rank 0's weights
            distributed.broadcast_([*G.parameters(), *G.buffers(), *D.parameters(), *D.buffers()])
            self.G_ema.load_state_dict(G.state_dict())

    def train_step(self, real: torch.Tensor, c: torch.Tensor | None = None, extra_generator_loss=None) -> dict:
        """One D step (+ R1 when due), one G step (+ path length when due), then the G_ema update.

        real: [batch_size, C, H, W] in [-1, 1]; c: its labels [batch_size, c_dim] (conditional models),
        which the generated batch shares. extra_generator_loss(G) -> scalar tensor is added to G's
        adversarial loss. Returns the step's losses as floats: loss_D, loss_G, and r1, pl, extra when
        computed.
        """
        cfg = self.config
        if real.shape[0] != cfg.batch_size:
            raise ValueError(f"expected a real batch of {cfg.batch_size} images, got {real.shape[0]}")
        real = real.to(self.device, torch.float32)
        c = c.to(self.device) if c is not None else None
        losses = {}
        with seeded_noise(self.rng, self.device):
            # Discriminator: logistic loss on real vs generated, then R1 on a step of its own.
            self.G.requires_grad_(False)
            self.D.requires_grad_(True)
            with torch.no_grad(), self._autocast():
                fake = self.G.synthesis(self._latents(cfg.batch_size, c), noise_mode=cfg.noise_mode)
            with self._autocast():
                loss_D = discriminator_loss(self.D, real, fake, c)
            self._optimise(self.opt_D, loss_D, self.D)
            losses["loss_D"] = loss_D
            if cfg.r1_gamma > 0 and self.step % cfg.r1_every == 0:
                r1 = r1_penalty(self.D, real, c)
                self._optimise(self.opt_D, r1 * (cfg.r1_gamma / 2) * cfg.r1_every, self.D)
                losses["r1"] = r1

            if self.step < cfg.discriminator_warmup:  # D-only: it learns the new real data before G follows it
                self.step += 1
                return _floats(losses)

            # Generator: non-saturating loss plus the procedure's terms, then path length on a step of its own.
            self.D.requires_grad_(False)
            self.G.requires_grad_(True)
            ws = self._latents(cfg.batch_size, c)
            with self._autocast():
                loss_G = generator_loss(self.D, self.G.synthesis(ws, noise_mode=cfg.noise_mode), c)
            losses["loss_G"] = loss_G
            if extra_generator_loss is not None:
                extra = extra_generator_loss(self.G)
                losses["extra"] = extra
                loss_G = loss_G + extra
            self._optimise(self.opt_G, loss_G, self.G)
            with torch.no_grad():  # column 0 of ws is never mixed: it is w of the first latent
                w_mean = self._averaged(ws[:, 0].mean(dim=0))
                self.G.mapping.w_avg.copy_(w_mean.lerp(self.G.mapping.w_avg, cfg.w_avg_beta))
            if cfg.pl_weight > 0 and self.step % cfg.pl_every == 0:
                pl_batch = max(1, cfg.batch_size // cfg.pl_batch_shrink)
                ws = self._latents(pl_batch, c[:pl_batch] if c is not None else None)
                pl, pl_mean = path_length_penalty(self.G, ws, self.pl_mean, cfg.pl_decay, self.rng, cfg.noise_mode)
                self.pl_mean = self._averaged(pl_mean)
                self._optimise(self.opt_G, pl * cfg.pl_weight * cfg.pl_every, self.G)
                losses["pl"] = pl
            self.D.requires_grad_(True)

        self._update_ema()
        self.step += 1
        return _floats(losses)

    def _optimise(self, optimiser: torch.optim.Optimizer, loss: torch.Tensor, module: torch.nn.Module) -> None:
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(module.parameters())  # several processes: the mean gradient
        optimiser.step()

    def _averaged(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean of `tensor` over the processes (itself when there is one)."""
        if self.world_size > 1:
            tensor = tensor.detach().clone()
            torch.distributed.all_reduce(tensor)
            tensor /= self.world_size
        return tensor

    def _latents(self, n: int, c: torch.Tensor | None) -> torch.Tensor:
        z1, z2 = (torch.randn([n, self.G.z_dim], generator=self.rng).to(self.device) for _ in range(2))
        return mixed_latents(self.G, z1, z2, c, self.config.style_mixing, self.rng)

    def _autocast(self):
        return autocast(self.device.type, self.config.autocast)

    @torch.no_grad()
    def _update_ema(self) -> None:
        beta = ema_beta(self.config, (self.step + 1) * self.config.batch_size * self.world_size, self.world_size)
        torch._foreach_lerp_(list(self.G_ema.parameters()), list(self.G.parameters()), 1 - beta)
        for ema_buffer, buffer in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
            ema_buffer.copy_(buffer)

    # -----------------------------------------------------------------------------------------------
    # Resuming

    def _run_identity(self) -> dict:
        """What a resume file must share with this run: training settings and both architectures."""
        identity = {
            "config": asdict(self.config),
            "generator": {"arch": self.G.arch, "config": config_dict(self.G)},
            "discriminator": {"arch": self.D.arch, "config": config_dict(self.D)},
        }
        return json.loads(json.dumps(identity))  # plain lists, numbers and strings, as torch.load gives back

    def state_dict(self) -> dict:
        """Everything needed to resume exactly: networks, optimisers, step, path length, RNG, settings.

        With several processes, every process must call it (the RNG states of all are gathered); any
        one of them, usually rank 0, then writes it, and every process of the resumed run reads it.
        """
        state = {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            **self._run_identity(),
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "step": self.step,
            "pl_mean": self.pl_mean,
        }
        return {**state, **rng_states(self.rng)}  # several processes: a collective call

    def load_state_dict(self, state: dict, source: str = "the resume state") -> None:
        """Continue from `state_dict()`'s state, which must be for the same settings and architectures.

        `source` names where the state came from in error messages. Every part is checked before it is
        used (networks, optimisers, counters, random-number states): a state that does not fit is a
        one-line GaneditError, never a failure later in training.
        """
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise GaneditError(f"{source}: not a ganedit training state (written by Trainer.save_state)")
        if state.get("version") != STATE_VERSION:
            raise GaneditError(
                f"{source}: training state version {state.get('version')!r} is not supported; upgrade ganedit"
            )
        saved = {key: state.get(key) for key in ("config", "generator", "discriminator")}
        differences = _differences(self._run_identity(), saved)
        if differences:
            raise GaneditError(
                f"resume file from a different run: {source} has {'; '.join(differences[:3])}; "
                "resume with the same settings and models, or start a new run"
            )
        step, pl_mean = state.get("step"), state.get("pl_mean")
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise state_mismatch(source, f"its step {step!r} is not a step count")
        if not isinstance(pl_mean, torch.Tensor) or pl_mean.shape != () or pl_mean.dtype != self.pl_mean.dtype:
            raise state_mismatch(source, "its running path length is not a float32 scalar")
        for name, module in (("G", self.G), ("D", self.D), ("G_ema", self.G_ema)):
            load_module_state(module, state.get(name), f"{source} ({name})")
        load_optimizer_state(self.opt_G, state.get("opt_G"), f"{source} (opt_G)")
        load_optimizer_state(self.opt_D, state.get("opt_D"), f"{source} (opt_D)")
        self.step = step
        self.pl_mean = pl_mean.to(self.device)
        restore_rng(self.rng, state, source)

    def save_state(self, path: Path | str) -> Path:
        """Write `state_dict()` to `path`, atomically, sealed with its sha256 (ganedit.store.state_file)."""
        return write_state_file(path, STATE_FORMAT, STATE_FILE_VERSION, self.state_dict())

    def load_state(self, path: Path | str) -> None:
        """Resume from a file written by `save_state` for the same settings and architectures."""
        state = read_state_file(path, STATE_FORMAT, STATE_FILE_VERSION, "training state file", "save it again")
        self.load_state_dict(state, str(path))


# ---------------------------------------------------------------------------------------------------
# Loading saved states, checked: a state that does not fit is a one-line error naming its source


def load_module_state(module: torch.nn.Module, state, source: str) -> None:
    """Fill `module` from a saved state_dict(): tensors only, every key, shape and dtype the module's."""
    if not isinstance(state, dict) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise state_mismatch(source, "not a dict of tensors")
    expected = module.state_dict()
    retyped = [f"{key} {v.dtype}" for key, v in state.items() if key in expected and v.dtype != expected[key].dtype]
    if retyped:
        raise state_mismatch(source, f"tensors of another dtype: {', '.join(retyped[:3])}")
    load_exact_state(module, state, source, hint="delete it and start again without --resume")


def load_optimizer_state(optimiser: torch.optim.Optimizer, state, source: str) -> None:
    """Load an optimiser's saved state_dict() after checking that it is one for these parameters: the same
    groups and settings, and per-parameter tensors shaped as their parameters (torch checks only counts)."""
    groups = optimiser.param_groups
    saved_groups = state.get("param_groups") if isinstance(state, dict) else None
    if not isinstance(saved_groups, list) or not isinstance(state.get("state"), dict):
        raise state_mismatch(source, "not an optimiser state")
    sizes = [len(saved["params"]) if isinstance(saved, dict) and isinstance(saved.get("params"), list) else None
             for saved in saved_groups]  # fmt: skip
    if sizes != [len(mine["params"]) for mine in groups]:
        raise state_mismatch(source, "its parameter groups are not this optimiser's")
    for saved, mine in zip(saved_groups, groups, strict=True):
        changed = [key for key in mine if key != "params" and (key not in saved or saved[key] != mine[key])]
        if changed:
            key = changed[0]
            raise state_mismatch(source, f"its {key} is {saved.get(key)!r}, this run's {mine[key]!r}")
    shapes = {
        index: parameter.shape
        for saved, mine in zip(saved_groups, groups, strict=True)
        for index, parameter in zip(saved["params"], mine["params"], strict=True)
    }
    for index, per_parameter in state["state"].items():
        if index not in shapes or not isinstance(per_parameter, dict):
            raise state_mismatch(source, f"it holds state for an unknown parameter {index!r}")
        for key, value in per_parameter.items():
            wanted = () if key == "step" else shapes[index]
            if not isinstance(value, torch.Tensor) or value.shape != wanted:
                shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise state_mismatch(source, f"{key} of parameter {index} is {shape}, not {list(wanted)}")
    optimiser.load_state_dict(state)


def rng_states(generator: torch.Generator) -> dict:
    """A generator's state for a resume file: {"rng": ...}, and with several processes (a collective call) every
    process's under "rng_per_rank", so that each process of the resumed run continues its own stream."""
    states = {"rng": generator.get_state()}
    if distributed.active():
        states["rng_per_rank"] = distributed.every_rank(generator.get_state())
    return states


def restore_rng(generator: torch.Generator, state: dict, source: str) -> None:
    """Restore what `rng_states` saved into `state`, this process's own stream where there are several."""
    set_rng_state(generator, state.get("rng"), source)
    if distributed.active() or "rng_per_rank" in state:
        own = distributed.own_rank(state.get("rng_per_rank"), source, "random-number state")
        set_rng_state(generator, own, source)


def set_rng_state(generator: torch.Generator, state, source: str) -> None:
    """Restore a torch.Generator from a saved get_state(), refusing anything that is not one."""
    if not isinstance(state, torch.Tensor) or state.dtype != torch.uint8 or state.shape != generator.get_state().shape:
        raise state_mismatch(source, "its random-number state is not one of this generator")
    generator.set_state(state)


def _differences(current, saved, prefix: str = "") -> list[str]:
    """'key = saved value (this run: current value)' for every leaf where the two differ."""
    if isinstance(current, dict) and isinstance(saved, dict):
        return [
            difference
            for key in sorted(set(current) | set(saved), key=str)
            for difference in _differences(current.get(key), saved.get(key), f"{prefix}{key}.")
        ]
    if current != saved:
        return [f"{prefix.rstrip('.')} = {saved!r} (this run: {current!r})"]
    return []
