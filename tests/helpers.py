"""Things several test files need: tiny models, malicious pickle payloads, training interrupts."""

import os

import torch

# A BigGAN-deep small enough to build in milliseconds: 16 px, 3 classes, attention before block 1.
TINY_BIGGAN = {
    "attention_layer_position": 1,
    "channel_width": 4,
    "class_embed_dim": 128,
    "eps": 1e-4,
    "layers": [[True, 2, 2], [True, 2, 1]],
    "n_stats": 51,
    "num_classes": 3,
    "output_dim": 16,
    "z_dim": 128,
}


class CreatesAFile:
    """Unpickling this object would run `touch <path>` (what a malicious checkpoint does)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


class OpensAFile:
    """Unpickling this object would create a file with `open(path, "w")`."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def tiny_stylegan2_pair(c_dim: int = 0, channels: tuple[int, ...] = (32, 32, 32), seed: int = 0):
    """A 16 px StyleGAN2 generator and discriminator (z = w = 32), seeded, without touching the global RNG."""
    from ganedit.generators.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = StyleGAN2Generator(
            StyleGAN2Generator.Config(
                z_dim=32,
                w_dim=32,
                c_dim=c_dim,
                img_resolution=16,
                img_channels=3,
                channels=list(channels),
                mapping_layers=2,
            )
        )
        D = StyleGAN2Discriminator(
            StyleGAN2Discriminator.Config(
                c_dim=c_dim,
                img_resolution=16,
                img_channels=3,
                channels=list(channels),
                cmap_dim=32 if c_dim else 0,
                mapping_layers=1 if c_dim else 0,
            )
        )
    return G, D


def interrupt_step(monkeypatch, at: int, action):
    """Make the engine call action() inside its `at`-th step (counted over the whole run); return the real step."""
    from ganedit.engine.adversarial import Trainer

    calls = {"n": 0}
    original_step = Trainer.train_step

    def step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at:
            action()  # a SIGINT arrives inside the step: the loop finishes the step, saves, then stops
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "train_step", step)
    return original_step


def same_parameters(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def tune(generator, judge, targets, *, class_names=None, **settings):
    """embed_tune with keyword settings (EmbedTuneSettings' fields)."""
    from ganedit.procedures import embed_tune as et

    return et.embed_tune(generator, judge, targets, et.EmbedTuneSettings(**settings), class_names=class_names)


def write_images(folder, images):
    """Images [N, 3, H, W] in [-1, 1] as PNG files NNN.png in a new `folder`; returns the folder."""
    from PIL import Image

    folder.mkdir(parents=True)
    for index, image in enumerate(images):
        array = ((image + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        Image.fromarray(array).save(folder / f"{index:03d}.png")
    return folder
