"""Provenance: what produced a checkpoint, recorded in its metadata.

Every model ganedit writes says which procedure made it, with every parameter, from which parents
(with their sha256), under which seed and software versions.
"""

import datetime
import hashlib
import platform
from pathlib import Path

import torch

from ganedit.version import __version__

CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    """sha256 of a file, or of a model folder's files (sorted by name, each name then its bytes)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode())
        with open(file, "rb") as stream:
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def versions() -> dict:
    return {"ganedit": __version__, "torch": torch.__version__, "python": platform.python_version()}


def make_provenance(
    procedure: str,
    parameters: dict,
    parents: list[dict],
    seed: int | None = None,
    evaluation: dict | None = None,
    recipe: dict | None = None,
) -> dict:
    """The provenance record stored in a checkpoint's metadata.

    `parents` is a list of {"source": <path or zoo name>, "sha256": <hex>} as returned by
    `parent_record`; `recipe` the resolved recipe of the run (`ganedit info OUT --recipe` prints it).
    `licence`: what the model inherits from the parents whose records carry one (ganedit.store.card).
    """
    record = {
        "procedure": procedure,
        "parameters": parameters,
        "parents": parents,
        "seed": seed,
        "versions": versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "evaluation": evaluation,
    }
    if recipe is not None:
        record["recipe"] = recipe
    licences = [parent["licence"] for parent in parents if parent.get("licence")]
    if licences:
        from ganedit.store.card import combined_licence

        record["licence"] = combined_licence(licences)
    return record


def parent_record(source: str, path: Path, bundle=None) -> dict:
    """How a parent model is named in provenance: as the user named it, plus the hash of its bytes, and
    with its loaded `bundle`, the licence it carries (ganedit.store.card.licence_of)."""
    record = {"source": str(source), "sha256": sha256_of(path)}
    if bundle is not None:
        from ganedit.store.card import licence_of

        record["licence"] = licence_of(bundle, source)
    return record
