"""Text-to-Unlearn (Nagasubramaniam et al., 2025; methods.md section 4): remove a concept named in words.

Two copies of the generator: G_f, frozen, and G_t, trained, both starting from the given weights. A
direction in CLIP space points from the concept to the concept-free neutral:

    Delta_T = normalise(E_T(neutral) - E_T(concept))       (text: "a shape" - "a red shape"; each E_T the
                                                            mean over NADA's ImageNet templates by default)
    Delta_T = normalise(mean E_I(neutral images) - mean E_I(concept images))     (image pairs, as the paper)

and each step moves G_t's images along it, sample by sample, relative to G_f's (StyleGAN-NADA's
directional loss, run towards concept-free):

    x_f = G_f(w), x_t = G_t(w)                                 same latents w (G_f's mapping), same noise
    Delta_I = E_I(x_t) - E_I(x_f)
    L_dir,i = 1 - cos(Delta_I,i, Delta_T)                      (1 - Delta_I,i . Delta_T where Delta_I,i = 0)
    L_dir = mean_i p_i L_dir,i      p_i = softmax(s [cos(E_I(x_f,i), E_T(concept)), cos(E_I(x_f,i), E_T(neutral))])_0
    L = sum_m weight_m L_dir,m  +  lpips_weight LPIPS(x_t, x_f)  +  anchor_weight mean_j (theta_j - theta_f,j)^2
        [+ extra_loss(x_t, x_f): the hook for an identity loss on faces]

summed over the CLIP models m of an ensemble. p_i is CLIP's zero-shot probability (its own temperature
s, 100 for OpenAI's weights) that sample i of the frozen model shows the concept rather than the neutral
prompt: only samples where the concept is present need to change (methods.md), so only they are pulled
along Delta_T. `concept_weighting=False` gives NADA's plain mean over all samples, which also asks the
samples without the concept to move along Delta_T: on the toy world it unlearns as well (PUL 96 vs
100) but at far worse quality (FID 10.0 vs 3.5, perceptual distance 1.30 vs 0.23; README). The weight
anchor is a mean over every trained parameter element. The baseline `global` ("push away from the
prompt", what the paper beats) replaces L_dir by cos(E_I(x_t), E_T(concept)) for every sample.

Noise: each step draws fresh random synthesis noise (NADA trains with random noise) and renders both
copies with the *same* draw, so Delta_I measures the edit and not two noise samples. NADA draws the
two copies' noise independently: on the toy model that makes |Delta_I| tiny but non-zero at step 0,
and the 1/|Delta_I| gradient of the normalisation was 40x the later ones (122 vs about 3), enough to
dominate Adam's second moment (beta2 0.992) for hundreds of steps. With the shared draw Delta_I is
exactly 0 at step 0, where the cosine is undefined: there the per-sample loss is its first-order term
1 - Delta_I . Delta_T (same value, bounded gradient: 0.3 at step 0, then about 2), where dividing by
|Delta_I| + epsilon would give a gradient of order 1/epsilon and NADA's re-encoding of x_t + 1e-6 one
of order 1e6.

What trains: the synthesis network without its toRGB layers (NADA: mapping and toRGB frozen), or with
them, or everything. Adaptive layer selection (NADA's `auto_layer_k`): before every step, the W+ codes
of a fresh batch (`auto_layer_batch`) take `auto_layer_iters` SGD steps (lr 0.01) on NADA's global
CLIP loss towards the target text (1 - cos(E_I(G_t(w+)), E_T(neutral))) with G_t's current weights;
the k W+ entries that moved most (mean |change|) choose the layers that train in that step: entry 0
drives the 4 px block (its constant and conv), entry i > 0 the convolution it styles; the last entry
drives only the last toRGB and is never chosen (see `select_layers` for NADA's own map).

NADA's defaults: Adam, lr 0.002 * 0.8, betas (0, 0.992), batch 2, 300 steps, untruncated training
latents (its 0.7 is only for displayed samples), prompts over its ImageNet templates. CLIP stays frozen
in float32 (ganedit.judges.clip).
"""

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ganedit.errors import GaneditError
from ganedit.generators.ops import freeze
from ganedit.judges.clip import image_embeddings, wasserstein_1d
from ganedit.settings import check, derived_seed, setting

METHODS = ("directional", "global")
LAYERS = ("synthesis", "synthesis+torgb", "all")
RESUME_FORMAT = "ganedit.text-unlearn-resume"

# StyleGAN-NADA's prompt templates (its `imagenet_templates`, from CLIP's ImageNet zero-shot prompts):
# with `templates=True` (the default) a prompt's embedding is the mean over them of each filled-in
# template's unit-norm embedding, and Delta_T the normalised difference of two such means (NADA's
# `compute_text_direction`).
TEMPLATES = (
    "a bad photo of a {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
    "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
    "a photo of a {}.", "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
    "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
    "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.",
    "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
    "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
    "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.",
    "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.",
    "a photo of a small {}.", "a tattoo of the {}.",
)  # fmt: skip
ARTICLES = ("a ", "an ", "the ")


@dataclass
class TextUnlearnSettings:
    """Every parameter of the procedure (the CLI's options have the same names)."""

    concept: str = setting(help="What must go, in words ('a person wearing eyeglasses').", metavar="TEXT")
    neutral: str = setting(help="The same without it ('a person').", metavar="TEXT")
    method: str = setting("directional", "Text-to-Unlearn's directional loss, or the global baseline "
                          "(push every image away from the prompt).", choices=METHODS)  # fmt: skip
    templates: bool = setting(True, "Embed each prompt as the mean over NADA's ImageNet templates "
                              "(off: the prompt alone).")  # fmt: skip
    concept_weighting: bool = setting(True, "Pull each sample by CLIP's probability that it shows the concept "
                                      "(off: NADA's plain mean).")  # fmt: skip
    steps: int = setting(300, "Training steps.", min=0, aliases=("--iterations",))
    batch_size: int = setting(2, "Latents per step.", min=1)
    lr: float = setting(0.002 * 0.8, "Adam learning rate (NADA's 0.002 * 0.8).", min=0, min_open=True)
    betas: tuple[float, float] = setting((0.0, 0.992), "Adam betas (NADA's).", min=0, max=1, max_open=True)
    lpips_weight: float = setting(0.0, "LPIPS to the frozen model's image (stabler, but unlearns less).", min=0)
    anchor_weight: float = setting(0.0, "Mean squared distance of the trained weights from the frozen ones.", min=0)
    layers: str = setting("synthesis", "What trains (NADA: synthesis without toRGB).", choices=LAYERS)
    auto_layers: int = setting(0, "k of NADA's adaptive layer selection; 0 = every layer of --layers.", min=0)
    auto_layer_iters: int = setting(1, "SGD steps on the W+ codes per layer choice.", min=1)
    auto_layer_batch: int = setting(8, "Latents of each layer choice (NADA's auto_layer_batch).", min=1)
    truncation: float = setting(1.0, "Truncation psi of the training latents (NADA trains untruncated).",
                                min=0, max=1)  # fmt: skip
    noise_mode: str = setting("random", "Synthesis noise while training: a fresh draw per step, the same in both "
                              "copies; or the stored one.", choices=("random", "const"))  # fmt: skip
    clip_weights: list[float] = setting([], "Weight per --clip (default 1 each; repeatable).", min=0,
                                        aliases=("--clip-weight",))  # fmt: skip
    seed: int = setting(0, "Same seed, same result (on the same device).")

    def __post_init__(self):
        check(self)

    def validate(self, clip_count: int = 1) -> None:
        """Raise GaneditError, naming the fix, for settings that cannot run."""
        concept, neutral = self.concept.strip(), self.neutral.strip()
        if not concept:
            raise GaneditError("the concept prompt is empty; say what must go, e.g. --concept 'a red shape'")
        if not neutral and self.method == "directional":
            raise GaneditError("the neutral prompt is empty; give --neutral, the concept without it ('a shape')")
        if " ".join(concept.lower().split()) == " ".join(neutral.lower().split()):
            raise GaneditError(
                f"concept and neutral prompts are the same ({concept!r}); the neutral prompt is the concept "
                "without what must go"
            )
        if self.method not in METHODS:
            raise GaneditError(f"unknown method {self.method!r}; choose one of: {', '.join(METHODS)}")
        if self.clip_weights and len(self.clip_weights) != clip_count:
            raise GaneditError(
                f"{len(self.clip_weights)} CLIP weights for {clip_count} CLIP models; give one --clip-weight per --clip"
            )


@dataclass
class TextUnlearnResult:
    generator: nn.Module
    info: dict


# ---------------------------------------------------------------------------------------------------
# Directions in CLIP space


def filled_templates(prompt: str) -> list[str]:
    """The prompt in each of NADA's TEMPLATES; a leading article of the prompt is dropped, as the templates have one."""
    bare = prompt.strip()
    for article in ARTICLES:
        if bare.lower().startswith(article) and len(bare) > len(article):
            bare = bare[len(article) :]
            break
    return [template.format(bare) for template in TEMPLATES]


@torch.no_grad()
def template_mean(clip, prompt: str, templates: bool = True) -> torch.Tensor:
    """Mean [D] of the unit-norm text embeddings of the prompt in each template (templates=False: the prompt alone)."""
    return clip.encode_text(filled_templates(prompt) if templates else [prompt]).mean(dim=0)


def prompt_embedding(clip, prompt: str, templates: bool = True) -> torch.Tensor:
    """Unit-norm text embedding [D] of a prompt: its normalised template mean."""
    mean = template_mean(clip, prompt, templates)
    return mean / mean.norm()


@torch.no_grad()
def text_direction(clip, concept: str, neutral: str, templates: bool = True) -> torch.Tensor:
    """Delta_T = normalise(mean E_T(neutral) - mean E_T(concept)) over the templates (NADA's compute_text_direction)."""
    direction = template_mean(clip, neutral, templates) - template_mean(clip, concept, templates)
    if direction.norm() < 1e-6:
        raise GaneditError(
            f"CLIP {clip.name} embeds the concept and neutral prompts identically; reword them so that they differ"
        )
    return direction / direction.norm()


@torch.no_grad()
def image_direction(clip, concept_images: torch.Tensor, neutral_images: torch.Tensor) -> torch.Tensor:
    """Delta_T from image pairs: normalise(mean E_I(neutral images) - mean E_I(concept images))."""

    def mean_embedding(images):
        return torch.cat([clip.encode_images(chunk.to(clip.device)) for chunk in images.split(64)]).mean(dim=0)

    direction = mean_embedding(neutral_images) - mean_embedding(concept_images)
    return direction / direction.norm().clamp_min(1e-12)


def concept_probability(clip, frozen: torch.Tensor, concept: torch.Tensor, neutral: torch.Tensor) -> torch.Tensor:
    """CLIP's zero-shot probability [N] that each image (embedded: frozen) shows the concept rather than the neutral."""
    logits = clip.logit_scale * torch.stack([frozen @ concept, frozen @ neutral], dim=1)
    return logits.softmax(dim=1)[:, 0]


def directional_loss(
    clip, x_t: torch.Tensor, frozen: torch.Tensor, direction: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """1 - cos(E_I(x_t) - E_I(x_f), Delta_T) per sample (frozen = E_I(x_f)); the batch mean, weighted if given.

    Where Delta_I is exactly 0 (x_t == x_f: both copies rendered with the same noise before any update)
    the cosine is undefined and its gradient grows as 1/|Delta_I|, so dividing by |Delta_I| + epsilon
    would give a first gradient of order 1/epsilon that dominates Adam's second moment for hundreds of
    steps. There the per-sample loss is the first-order term 1 - Delta_I . Delta_T instead: the same
    value (1) and a bounded gradient that moves Delta_I along Delta_T. (NADA re-encodes x_t + 1e-6,
    whose normalised direction has the same 1/|Delta_I| gradient.)
    """
    delta = clip.encode_images(x_t) - frozen  # [N, D]
    norm = delta.norm(dim=-1, keepdim=True)
    zero = norm == 0
    unit = torch.where(zero, delta, delta / torch.where(zero, torch.ones_like(norm), norm))
    per_sample = 1 - unit @ direction
    return per_sample.mean() if weights is None else (weights * per_sample).mean()


def global_loss(clip, x_t: torch.Tensor, concept: torch.Tensor) -> torch.Tensor:
    """cos(E_I(x_t), E_T(concept)), averaged over the batch: push every image away from the prompt."""
    return (clip.encode_images(x_t) @ concept).mean()


class ClipObjective:
    """The CLIP part of the loss, summed over an ensemble with weights; targets computed once."""

    def __init__(self, clips: list, settings: TextUnlearnSettings, images: tuple[torch.Tensor, torch.Tensor] | None):
        self.clips = clips
        self.weights = settings.clip_weights or [1.0] * len(clips)
        self.method = settings.method
        self.concepts = [prompt_embedding(clip, settings.concept, settings.templates) for clip in clips]
        self.neutrals = None
        if self.method == "directional":
            if images is not None:
                self.directions = [image_direction(clip, *images) for clip in clips]
            else:
                self.directions = [
                    text_direction(clip, settings.concept, settings.neutral, settings.templates) for clip in clips
                ]
            self.neutrals = [prompt_embedding(clip, settings.neutral, settings.templates) for clip in clips]
        self.concept_weighting = settings.concept_weighting

    def __call__(self, x_t: torch.Tensor, x_f: torch.Tensor) -> torch.Tensor:
        """The method's loss of G_t's images x_t against G_f's x_f on the same latents."""

        def term(m, clip, x_t_m):
            if self.method == "global":
                return global_loss(clip, x_t_m, self.concepts[m])
            with torch.no_grad():
                frozen = clip.encode_images(x_f.to(clip.device))
                shows = None
                if self.concept_weighting:
                    shows = concept_probability(clip, frozen, self.concepts[m], self.neutrals[m])
            return directional_loss(clip, x_t_m, frozen, self.directions[m], shows)

        return self._ensemble(x_t, term)

    def global_towards_target(self, x: torch.Tensor) -> torch.Tensor:
        """NADA's global CLIP loss towards the target text (the neutral prompt; the concept's for `global`)."""

        def term(m, clip, x_m):
            if self.method == "global":
                return global_loss(clip, x_m, self.concepts[m])
            return 1 - (clip.encode_images(x_m) @ self.neutrals[m]).mean()

        return self._ensemble(x, term)

    def _ensemble(self, x: torch.Tensor, term) -> torch.Tensor:
        """sum_m weight_m * term(m, clip_m, x on clip_m's device), on x's device."""
        total = 0
        for m, (clip, weight) in enumerate(zip(self.clips, self.weights, strict=True)):
            total = total + weight * term(m, clip, x.to(clip.device)).to(x.device)
        return total


# ---------------------------------------------------------------------------------------------------
# What trains


def layer_parameters(G: nn.Module, layers: str) -> list[tuple[str, nn.Parameter]]:
    """The (name, parameter) pairs that train under a LAYERS choice."""
    if layers == "all":
        return list(G.named_parameters())
    named = [(f"synthesis.{n}", p) for n, p in G.synthesis.named_parameters()]
    if layers == "synthesis":
        named = [(n, p) for n, p in named if ".torgb." not in n]
    return named


def styled_layers(G: nn.Module) -> list[list[nn.Module]]:
    """For each W+ entry, the synthesis modules it styles (toRGB excluded): [const block] or [conv]."""
    groups: list[list[nn.Module]] = [[] for _ in range(G.num_ws)]
    index = 0
    for resolution in G.synthesis.block_resolutions:
        block = getattr(G.synthesis, f"b{resolution}")
        if block.num_conv == 1:  # the 4 px block: its constant and conv1 both follow entry 0
            groups[index].append(block)
        else:
            groups[index].append(block.conv0)
            groups[index + 1].append(block.conv1)
        index += block.num_conv
    return groups


def select_layers(
    G_t: nn.Module, objective: ClipObjective, w: torch.Tensor, k: int, iterations: int, noise_mode: str
) -> list[int]:
    """NADA's adaptive layer selection (`determine_opt_layers`): the k W+ entries SGD moves most.

    w [N, num_ws, w_dim]: a fresh batch's W+ codes. They take `iterations` SGD steps (lr 0.01) on NADA's
    global CLIP loss towards the target text through G_t's current weights; the entries that moved most
    (mean |change|) are chosen. Entry 0 maps to the 4 px block and entry i > 0 to the convolution it
    styles (NADA's own map, [conv1, to_rgb1, convs...], is shifted by one from entry 2 on); the last
    entry styles only the last toRGB and is never chosen.
    """
    codes = w.detach().clone().requires_grad_(True)
    optimiser = torch.optim.SGD([codes], lr=0.01)
    for _ in range(iterations):
        loss = objective.global_towards_target(G_t.synthesis(codes, noise_mode=noise_mode))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    G_t.zero_grad(set_to_none=True)
    movement = (codes.detach() - w).abs().mean(dim=(0, 2))  # [num_ws]
    movement[-1] = -1  # the last entry styles only the last toRGB
    return sorted(movement.topk(min(k, G_t.num_ws - 1)).indices.tolist())


# ---------------------------------------------------------------------------------------------------
# The procedure


def text_unlearn(
    G: nn.Module,
    clips: list,
    settings: TextUnlearnSettings,
    *,
    direction_images: tuple[torch.Tensor, torch.Tensor] | None = None,
    perceptual: nn.Module | None = None,
    extra_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    checkpoint=None,
    checkpoint_every: int = 0,
    resume: bool = False,
    progress=None,
) -> TextUnlearnResult:
    """Fine-tune a copy of G so that its images lose `settings.concept` (see the module docstring).

    clips: frozen ClipModels (ganedit.judges.clip), an ensemble when more than one.
    direction_images: (concept images, neutral images) in [-1, 1] for the image-pair direction.
    perceptual: a distance module (ganedit.judges.perceptual), needed when lpips_weight > 0.
    extra_loss(x_t, x_f): a further term (an identity loss for faces), added as is.
    checkpoint / checkpoint_every / resume: the resume file, written atomically every N steps and on
    Ctrl-C; resume=True continues from it (refused when it belongs to another run).
    """
    from ganedit.engine import distributed
    from ganedit.engine.adversarial import load_module_state, load_optimizer_state, restore_rng, rng_states
    from ganedit.engine.loop import deferred_interrupts, read_resume, run_identity, write_resume
    from ganedit.generators.sampling import seeded_noise

    if G.arch != "stylegan2-generator":
        raise GaneditError(f"the model is a {G.arch}; text-unlearn works on StyleGAN2 generators")
    settings.validate(len(clips))
    if settings.lpips_weight > 0 and perceptual is None:
        raise GaneditError("lpips_weight > 0 needs a perceptual distance (perceptual=...)")
    device = next(G.parameters()).device
    # Both copies in training mode, so that they compute with the same (unfused) modulated convolution: at
    # step 0 their images are then bit-identical and Delta_I is exactly 0 (see directional_loss).
    G_f = freeze(copy.deepcopy(G)).train()
    G_t = copy.deepcopy(G).train().requires_grad_(False)
    named = layer_parameters(G_t, settings.layers)
    for _, parameter in named:
        parameter.requires_grad_(True)
    parameters = [p for _, p in named]
    distributed.broadcast_(parameters)  # several processes (torchrun): all start from rank 0's weights
    anchor = [p.detach().clone() for p in parameters] if settings.anchor_weight > 0 else None
    groups = styled_layers(G_t) if settings.auto_layers > 0 else None
    objective = ClipObjective(clips, settings, direction_images)
    optimiser = torch.optim.Adam(parameters, lr=settings.lr, betas=tuple(settings.betas))
    rng = torch.Generator().manual_seed(settings.seed + distributed.rank())  # each process its own latents
    identity = run_identity(
        {**asdict(settings), "clips": [clip.name for clip in clips]},
        [*G.state_dict().values(), *(direction_images or ())],
    )
    step, history, seconds = 0, [], 0.0
    if resume:
        state = read_resume(checkpoint, RESUME_FORMAT, identity, "text-unlearn")
        step, history, seconds = _checked_progress(checkpoint, state, settings.steps)
        load_module_state(G_t, state.get("generator"), f"{checkpoint} (generator)")
        load_optimizer_state(optimiser, state.get("optimiser"), f"{checkpoint} (optimiser)")
        restore_rng(rng, state, str(checkpoint))

    def save():
        state = {"generator": G_t.state_dict(), "optimiser": optimiser.state_dict(), **rng_states(rng)}
        write_resume(checkpoint, RESUME_FORMAT, identity, (step,), None, None, history=history, seconds=seconds,
                     **state)  # fmt: skip

    task = progress.task("text-unlearn", settings.steps, step) if progress is not None else None
    started = time.perf_counter() - seconds
    with deferred_interrupts() as interrupt:
        while step < settings.steps:
            chosen = None
            if groups is not None:
                z = torch.randn(settings.auto_layer_batch, G.z_dim, generator=rng).to(device)
                c = _random_classes(G, settings.auto_layer_batch, rng, device)
                with torch.no_grad():
                    w = G_f.mapping(z, c, truncation_psi=settings.truncation)
                with seeded_noise(rng, device):
                    chosen = select_layers(G_t, objective, w, settings.auto_layers, settings.auto_layer_iters,
                                           settings.noise_mode)  # fmt: skip
                chosen = distributed.every_rank(chosen)[0]  # every process trains the layers rank 0 chose
                trains = {id(p) for i in chosen for module in groups[i] for p in module.parameters()}
                for parameter in parameters:
                    parameter.requires_grad_(id(parameter) in trains)
            z = torch.randn(settings.batch_size, G.z_dim, generator=rng).to(device)
            c = _random_classes(G, settings.batch_size, rng, device)
            noise_seed = int(torch.randint(2**62, [], generator=rng))  # one noise draw, shared by both copies
            with torch.no_grad(), seeded_noise(noise_seed, device):
                w = G_f.mapping(z, c, truncation_psi=settings.truncation)
                x_f = G_f.synthesis(w, noise_mode=settings.noise_mode)
            with seeded_noise(noise_seed, device):
                if settings.layers == "all":
                    x_t = G_t(z, c, truncation_psi=settings.truncation, noise_mode=settings.noise_mode)
                else:
                    x_t = G_t.synthesis(w, noise_mode=settings.noise_mode)
            losses = {"clip": objective(x_t, x_f)}
            if settings.lpips_weight > 0:
                losses["lpips"] = settings.lpips_weight * perceptual(x_t, x_f).mean()
            if anchor is not None:
                squared = sum(((p - a) ** 2).sum() for p, a in zip(parameters, anchor, strict=True))
                losses["anchor"] = settings.anchor_weight * squared / sum(a.numel() for a in anchor)
            if extra_loss is not None:
                losses["extra"] = extra_loss(x_t, x_f)
            loss = sum(losses.values())
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            distributed.average_gradients(parameters)
            optimiser.step()
            step += 1
            seconds = time.perf_counter() - started
            history.append({name: float(f"{float(value.detach()):.4g}") for name, value in losses.items()})
            if checkpoint is not None and checkpoint_every and step % checkpoint_every == 0 and step < settings.steps:
                save()
            if interrupt.shared():
                if checkpoint is not None:
                    save()
                interrupt.stop()
            if progress is not None:
                progress.update(task, step, {**history[-1], **({"layers": len(chosen)} if chosen else {})})
    G_t.requires_grad_(False).eval()
    info = {
        "steps": step,
        "seconds": round(seconds, 2),
        "trained_parameters": sum(p.numel() for p in parameters),
        "final_losses": history[-1] if history else {},
        "direction": "image pairs" if direction_images is not None else "text",
    }
    if distributed.active():
        info["processes"] = distributed.processes(G_t)  # the processes ended in sync (checked)
    return TextUnlearnResult(G_t, info)


def _checked_progress(path, state: dict, steps: int) -> tuple[int, list, float]:
    """(step, history, seconds) of a resume file's state, each checked: a step count up to `steps`, a list of
    {loss name: value} rows, a number of seconds."""
    from ganedit.store.state_file import state_mismatch

    stage, history, seconds = state["stage"], state.get("history"), state.get("seconds")
    step = stage[0] if len(stage) == 1 else None
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= steps:
        raise state_mismatch(str(path), f"its stage {list(stage)!r} is not a step of this run's {steps}")
    if not isinstance(history, list) or not all(
        isinstance(row, dict) and all(isinstance(key, str) and isinstance(value, float) for key, value in row.items())
        for row in history
    ):
        raise state_mismatch(str(path), "its loss history is not a list of {name: value} rows")
    if not isinstance(seconds, float) or not math.isfinite(seconds) or seconds < 0:
        raise state_mismatch(str(path), f"its time {seconds!r} is not a number of seconds")
    return step, history, seconds


def _random_classes(G: nn.Module, count: int, rng: torch.Generator, device) -> torch.Tensor | None:
    """One-hot labels drawn uniformly for a conditional generator (every class loses the concept); None otherwise."""
    if G.c_dim == 0:
        return None
    return torch.nn.functional.one_hot(torch.randint(G.c_dim, (count,), generator=rng), G.c_dim).float().to(device)


# ---------------------------------------------------------------------------------------------------
# Evaluation (evaluation.md): CLIP score of the concept, PUL by a judge, quality against the frozen model


@torch.no_grad()
def clip_scores(clip, images: torch.Tensor, prompt: str, batch_size: int = 250) -> torch.Tensor:
    """CLIP score [N] of each image for a prompt: 100 * cos(E_I(image), E_T(prompt)) (Hessel et al., unclipped)."""
    text = prompt_embedding(clip, prompt)
    return torch.cat(
        [100 * clip.encode_images(chunk.to(clip.device)) @ text for chunk in images.split(batch_size)]
    ).cpu()


def evaluate_text_unlearning(
    before: nn.Module,
    after: nn.Module,
    clip,
    concept: str,
    *,
    judge: nn.Module | None = None,
    feature: int | None = None,
    perceptual: nn.Module | None = None,
    samples: int = 1000,
    seed: int = 0,
) -> dict:
    """Before/after figures on `samples` fixed latents (seed `seed`, stored noise, no truncation).

    - CLIP score of the concept prompt (mean before and after) and the W1 distance between the two
      score distributions;
    - with a judge: PUL (its argmax == feature, before vs after), and the share of each judge class;
    - LPIPS (or the given perceptual distance) between before and after images of the same latent;
    - Frechet / kernel distances (`fd_<space>`, `kd_<space>`: `fd_oracle`, `fd_clip`; not Inception's FID / KID)
      of before and after samples against a reference from the frozen model (other latents, derived for
      "reference"): its samples without the feature where a judge says so, else all of them; in the judge's
      feature space, else in CLIP's image embedding space.
    """
    from ganedit.generators.sampling import generate, sample_latents
    from ganedit.judges.evaluation import judge_comparison
    from ganedit.judges.metrics import frechet_distance, kernel_inception_distance

    def classes(count):  # conditional generators: every class in turn
        return torch.arange(count) % before.c_dim if before.c_dim else None

    z = sample_latents(before, samples, seed)
    images_before, images_after = generate(before, z, classes(samples)), generate(after, z, classes(samples))
    count = 2 * samples if judge is not None else samples  # a judge filters the reference: draw more
    reference = generate(before, sample_latents(before, count, derived_seed(seed, "reference")), classes(count))
    scores_before, scores_after = clip_scores(clip, images_before, concept), clip_scores(clip, images_after, concept)
    report = {
        "samples": samples,
        "seed": seed,
        "clip": clip.name,
        "concept": concept,
        "clip_score_before": round(float(scores_before.mean()), 3),
        "clip_score_after": round(float(scores_after.mean()), 3),
        "clip_score_w1": round(wasserstein_1d(scores_before, scores_after), 3),
    }
    if perceptual is not None:
        device = next(perceptual.parameters()).device
        distances = [
            perceptual(a.to(device), b.to(device)).cpu()
            for a, b in zip(images_before.split(250), images_after.split(250), strict=True)
        ]
        report.update(
            {"perceptual": perceptual.name, "perceptual_distance": round(float(torch.cat(distances).mean()), 5)}
        )
    if judge is not None:
        report.update(judge_comparison(judge, feature, images_before, images_after, reference))
        report["quality_features"] = f"{report['judge']} features"
        report["reference"] = f"{report['reference_positives']} frozen-model samples without '{report['feature']}'"
        return report
    reference_features = image_embeddings(clip, reference)
    features_before, features_after = image_embeddings(clip, images_before), image_embeddings(clip, images_after)
    report.update({
        "quality_features": f"{clip.name} image embeddings",
        "reference": f"{len(reference_features)} frozen-model samples",
        "fd_clip_before": frechet_distance(features_before, reference_features),
        "fd_clip_after": frechet_distance(features_after, reference_features),
        "kd_clip_before": kernel_inception_distance(features_before, reference_features),
        "kd_clip_after": kernel_inception_distance(features_after, reference_features),
    })  # fmt: skip
    return report
