"""The judge a command's --judge / --feature name, shared by unlearn and text-unlearn."""

import torch

from ganedit.errors import GaneditError


def judge_shows(judge, feature_index):
    """images -> bool mask where the judge's argmax is the feature (None without a judge), for grids."""
    if judge is None:
        return None
    device = next(judge.parameters()).device
    return lambda images: (
        torch.cat([judge(part.to(device)).argmax(dim=1).cpu() for part in images.split(256)]) == (feature_index)
    )


def save_feature_grid(before, after, grid, seed: int, judge, feature_index, feature: str | None) -> dict:
    """--grid of unlearn / text-unlearn: latents where the judge saw `feature` before the edit, then random
    ones. Returns the report's `grid_columns`; says on stderr when too few samples showed the feature."""
    from ganedit.cli.console import stderr_console
    from ganedit.generators.grids import save_before_after_grid

    columns = save_before_after_grid(before, after, grid, seed, shows=judge_shows(judge, feature_index),
                                     feature=feature if judge is not None else None)  # fmt: skip
    if columns.note is not None:
        stderr_console().print(f"[yellow]grid: {columns.note}[/yellow]")
    return columns.report()


def judge_for(judge_spec: str | None, labels, feature: str, device: torch.device):
    """(judge, index of the feature among its labels). `toy` (`toy-strict`) is the (strict) toy oracle's head
    that names the feature."""
    from ganedit.judges import load_judge, resolve_label

    if judge_spec is None:
        raise GaneditError(f"which classifier recognises {feature!r}? give --judge SPEC (see `--help`)")
    if judge_spec in ("toy", "toy-strict"):
        from ganedit.toy.world import ATTRIBUTES

        attribute = next((a for a, names in ATTRIBUTES.items() if feature.strip().lower() in names), None)
        if attribute is None:
            names = ", ".join(name for values in ATTRIBUTES.values() for name in values)
            raise GaneditError(f"unknown toy feature {feature!r}; choose one of: {names}")
        judge_spec = f"{judge_spec}:{attribute}"
    judge = load_judge(judge_spec, labels, device)
    return judge, resolve_label(judge, feature)
