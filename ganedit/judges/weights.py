"""Warming the caches of the weights the judges load, so that later runs (a CI's, an offline one) find them.

`ganedit zoo download --judges ... --clip ... --lpips ... --inception` (or `--all-aux`) loads each once,
as a run would, through its library's own download, and reports the files that appeared in the caches.
"""

from pathlib import Path

from ganedit.errors import GaneditError
from ganedit.store.zoo import is_offline

AUX_DEFAULTS = {  # what `--all-aux` fetches: the weights ganedit's defaults load on real models
    "judges": ("resnet50",),  # embed-tune's judge of a 1000-class model
    "clips": ("ViT-B-32",),  # text-unlearn's --clip (ganedit.judges.clip.DEFAULT_CLIP)
    "lpips": ("alex", "vgg"),  # lpips-alex is the default diversity distance; lpips-vgg its alternative
    "inception": True,  # FID / KID / IS / precision-recall
}


def fetch_aux_weights(
    judges: tuple[str, ...] = (), clips: tuple[str, ...] = (), lpips: tuple[str, ...] = (), inception: bool = False
) -> list[dict]:
    """Fetch into their caches the weights these judges, CLIPs, LPIPS networks (`alex`, `vgg`) and
    torch-fidelity's Inception load, by loading each once as a later run does; one record per item:
    {"kind", "name", "written": [files that appeared in the caches]}.

    Each goes through its library's own download: torchvision's `weights.get_state_dict(check_hash=True)`
    into `torch.hub.get_dir()/checkpoints` (judges, and the LPIPS trunks; LPIPS' linear weights ship with
    the `lpips` package), open_clip's pretrained config and the Hugging Face hub cache (CLIP), torch-fidelity's
    release file into the torch hub cache (Inception). Offline: one line, nothing is fetched.
    """
    from ganedit.judges.classifiers import load_judge
    from ganedit.judges.clip import load_clip
    from ganedit.judges.fidelity import EXTRACTOR, load_inception
    from ganedit.judges.perceptual import SPECS as LPIPS_SPECS
    from ganedit.judges.perceptual import load_perceptual

    unknown = [network for network in lpips if f"lpips-{network.removeprefix('lpips-')}" not in LPIPS_SPECS]
    if unknown:  # before anything is fetched
        raise GaneditError(f"unknown LPIPS network {unknown[0]!r}; choose from: alex, vgg")
    asked = [("judge", spec, load_judge) for spec in judges]
    asked += [("clip", spec, load_clip) for spec in clips]
    asked += [("lpips", f"lpips-{network.removeprefix('lpips-')}", load_perceptual) for network in lpips]
    asked += [("inception", EXTRACTOR, lambda _name: load_inception())] if inception else []
    if asked and is_offline():
        raise GaneditError(
            f"cannot fetch the weights of {', '.join(name for _, name, _ in asked)}: offline mode is on "
            "(GANEDIT_OFFLINE=1 / HF_HUB_OFFLINE=1); unset it to download them"
        )
    records = []
    for kind, name, load in asked:
        before = _weights_in_caches()
        load(name)
        records.append({"kind": kind, "name": name, "written": sorted(map(str, _weights_in_caches() - before))})
    return records


def _weights_in_caches() -> set[Path]:
    """The files in the torch hub's checkpoints folder and the Hugging Face hub cache's snapshots."""
    import torch
    from huggingface_hub import constants

    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    files = {path for path in checkpoints.glob("*") if path.is_file()} if checkpoints.is_dir() else set()
    return files | {path for path in Path(constants.HF_HUB_CACHE).glob("*/snapshots/*/**/*") if path.is_file()}
