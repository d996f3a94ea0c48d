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


def load_exact_state(
    module: torch.nn.Module,
    state: dict,
    source: str,
    hint: str = "the file is damaged or belongs to a different model",
) -> None:
    """Fill every parameter and buffer of `module` from `state`, or raise ArchitectureMismatchError.

    Missing, unexpected and mis-shaped tensors are all refused, in one line that lists a few of each:
    a module is never partially loaded.
    """
    from ganedit.errors import ArchitectureMismatchError

    expected = module.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    misshaped = [
        f"{key} {list(state[key].shape)} (expected {list(expected[key].shape)})"
        for key in expected
        if key in state and state[key].shape != expected[key].shape
    ]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if keys:
            shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
            problems.append(f"{len(keys)} {label}: {shown}")
    if problems:
        raise ArchitectureMismatchError(
            f"{source}: tensors do not match the {module.arch} architecture ({'; '.join(problems)}); {hint}"
        )
    module.load_state_dict(state, strict=True)


def _import_all() -> None:
    from ganedit.generators import biggan_deep, stylegan2  # noqa: F401  (registers the architectures)
