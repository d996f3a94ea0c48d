"""Generator and discriminator architectures, in pure PyTorch.

Every architecture class carries:
- `arch`: a short unique string ("biggan-deep", "stylegan2-generator", "stylegan2-discriminator");
- `config`: a dataclass instance holding every constructor argument, so that
  `build(arch, dataclasses.asdict(module.config))` rebuilds an identical module and
  `load_state_dict(strict=True)` fills it. ganedit's own checkpoint format relies on exactly this.
"""

import dataclasses

import torch

ARCHITECTURES: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: make an architecture buildable by its `arch` name."""
    ARCHITECTURES[cls.arch] = cls
    return cls


def build(arch: str, config: dict) -> torch.nn.Module:
    """Build an architecture from its name and the plain-dict form of its config."""
    from ganedit.errors import CheckpointFormatError

    _import_all()
    if arch not in ARCHITECTURES:
        raise CheckpointFormatError(
            f"unknown architecture {arch!r} (known: {', '.join(sorted(ARCHITECTURES))}); "
            "the file was written by a newer ganedit: upgrade ganedit"
        )
    cls = ARCHITECTURES[arch]
    return cls(cls.Config(**config))


def config_dict(module: torch.nn.Module) -> dict:
    """The plain-dict (JSON-ready) form of a module's config."""
    return dataclasses.asdict(module.config)


def _import_all() -> None:
    from ganedit.models import biggan_deep, stylegan2  # noqa: F401  (registers the architectures)
