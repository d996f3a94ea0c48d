"""Model cards: a README.md beside a written model, in the Hugging Face model-card format.

A card is written with huggingface_hub's ModelCard / ModelCardData: YAML front matter (licence, library,
tags, base models where they are Hub repositories), then what a reader needs: what was done to which
parents (with their sha256), the licence the model inherits and why, the evaluation, how to load it.

The licence of an edit is its parents' (`licence_of`, `combined_licence`), recorded in the provenance so
that an edit of an edit inherits it too:

| parent | licence |
|---|---|
| a zoo model | the zoo's (`ganedit zoo list`): BigGAN-deep Apache-2.0, NVIDIA's StyleGAN2s NVIDIA's -NC |
| an NVIDIA network pickle (any) | NVIDIA Source Code License-NC: made with NVIDIA's code, non-commercial |
| a ganedit file | the licence its provenance records (the toy models: ganedit's, MIT) |
| anything else (a rosinality .pt, a BigGAN folder of unknown origin) | unknown: the card says so |

A non-commercial parent makes the edit non-commercial; parents under different licences are all listed.
"""

import json
from pathlib import Path

from ganedit.errors import GaneditError

CARD_NAME = "README.md"
NVIDIA_NC = {
    "id": "other",
    "name": "nvidia-source-code-license-nc",
    "title": "NVIDIA Source Code License-NC",
    "link": "https://github.com/NVlabs/stylegan2-ada-pytorch/blob/main/LICENSE.txt",
    "non_commercial": True,
}
APACHE = {"id": "apache-2.0", "name": "apache-2.0", "title": "Apache-2.0", "link": None, "non_commercial": False}
MIT = {"id": "mit", "name": "mit", "title": "MIT (ganedit's own licence)", "link": None, "non_commercial": False}
UNKNOWN = {"id": "unknown", "name": "unknown", "title": "unknown", "link": None, "non_commercial": False}
ZOO_LICENCES = {"Apache-2.0": APACHE, "as ganedit": MIT, "NVIDIA Source Code License-NC (non-commercial)": NVIDIA_NC}


def licence_of(bundle, name: str | None = None) -> dict:
    """The licence a loaded model (a ModelBundle; `name`: what the user called it) carries, with `from`:
    where it was read and why."""
    from ganedit.store.zoo import PACKAGE_DATA, REGISTRY

    name = str(name or bundle.source)
    entry = REGISTRY.get(name)
    if entry is None and Path(bundle.source).resolve().parent == PACKAGE_DATA.resolve():  # an embedded file's path
        entry = next((e for e in REGISTRY.values() if e.embedded and e.load_path == Path(bundle.source).name), None)
    if entry is not None and entry.licence in ZOO_LICENCES:
        return {**ZOO_LICENCES[entry.licence], "from": [f"{name} (the zoo's licence)"]}
    if "nvidia" in bundle.format:
        return {**NVIDIA_NC, "from": [f"{name} (an NVIDIA network pickle)"]}
    recorded = (bundle.metadata or {}).get("provenance", {}).get("licence")
    if isinstance(recorded, dict) and isinstance(recorded.get("id"), str) and isinstance(recorded.get("name"), str):
        return {**recorded, "from": [f"{name} (its provenance: {', '.join(map(str, recorded.get('from', [])))})"]}
    return {**UNKNOWN, "from": [f"{name} ({bundle.format}: its licence is not recorded)"]}


def combined_licence(licences: list[dict]) -> dict:
    """One licence for a model made from several: a shared one, else NVIDIA's if any parent is non-commercial
    (the strictest term carries over), else "other" naming them all; `from` lists every parent's reason."""
    sources = [reason for licence in licences for reason in licence.get("from", [])]
    kinds = {licence["name"] for licence in licences}
    if len(kinds) == 1:
        return {**licences[0], "from": sources}
    if any(licence.get("non_commercial") for licence in licences):
        strictest = next(licence for licence in licences if licence.get("non_commercial"))
        return {**strictest, "from": sources, "also": sorted(kinds - {strictest["name"]})}
    return {"id": "other", "name": "mixed", "title": " + ".join(sorted(kinds)), "link": None,
            "non_commercial": False, "from": sources}  # fmt: skip


def card_path(output: Path | str, folder: bool = False) -> Path:
    """Where the card of `output` goes: inside it for a folder output, else beside it."""
    output = Path(output)
    return output / CARD_NAME if folder else output.parent / CARD_NAME


def check_card_target(output: Path | str, folder: bool = False) -> Path:
    """The card's path, refused before any work if a README.md that is not a ganedit card is there."""
    path = card_path(output, folder)
    if path.is_dir():
        raise GaneditError(f"{path} is a folder; --card writes a README.md there: move it or write the model elsewhere")
    if path.exists():
        try:
            head = path.read_text(encoding="utf-8", errors="replace")[:4096]
        except OSError as error:
            raise GaneditError(f"cannot read {path} ({error.strerror}); --card would replace it") from None
        if "library_name: ganedit" not in head:
            raise GaneditError(
                f"{path} exists and is not a ganedit model card; write the model into a folder of its own "
                "(the card is that folder's README.md) or remove the file"
            )
    return path


def card_text(output: Path | str, provenance: dict, class_names: list[str] | None = None) -> str:
    """The model card of `output` (as huggingface_hub.ModelCard renders it) from the model's provenance."""
    from huggingface_hub import ModelCard, ModelCardData

    output = Path(output)
    licence = provenance.get("licence") or UNKNOWN
    procedure = provenance.get("procedure", "unknown")
    parents = provenance.get("parents", [])
    data = {"license": licence["id"], "library_name": "ganedit", "tags": ["ganedit", "gan", procedure]}
    if licence["id"] == "other":
        data.update(license_name=licence["name"], license_link=licence.get("link") or None)
    hub_parents = [p["source"] for p in parents if str(p.get("source", "")).startswith("hf://")]
    if hub_parents:
        data["base_model"] = [source.removeprefix("hf://") for source in hub_parents]
    card_data = ModelCardData(**{key: value for key, value in data.items() if value is not None})

    lines = [f"# {output.name}", "", f"Made by ganedit's `{procedure}` from:", ""]
    lines += ["| parent | sha256 |", "|---|---|"]
    lines += [f"| `{p.get('source')}` | `{p.get('sha256')}` |" for p in parents]
    lines += ["", "## Licence", "", _licence_paragraph(licence), ""]
    if class_names:
        lines += ["## Classes", "", ", ".join(f"`{name}`" for name in class_names), ""]
    lines += ["## How to load", "", "```bash", f"ganedit sample {output.name} -n 8 -o samples.png", "```", "",
              "```python", "import ganedit", "", f'bundle = ganedit.load_model("{output.name}")',
              "G = bundle.generator  # torch.nn.Module, eval mode", "```", ""]  # fmt: skip
    lines += ["## What was done", "", f"Procedure `{procedure}`, seed `{provenance.get('seed')}`. Every parameter:", ""]
    lines += ["```json", json.dumps(provenance.get("parameters", {}), indent=2, default=str), "```", ""]
    if provenance.get("recipe"):
        lines += ["The resolved recipe (`ganedit info MODEL --recipe`):", "", "```json",
                  json.dumps(provenance["recipe"], indent=2, default=str), "```", ""]  # fmt: skip
    if provenance.get("evaluation"):
        lines += ["## Evaluation", "", "As the command reported it (the names say what each figure is):", "",
                  "```json", json.dumps(provenance["evaluation"], indent=2, default=str), "```", ""]  # fmt: skip
    versions = ", ".join(f"{name} {version}" for name, version in provenance.get("versions", {}).items())
    lines += ["## Versions", "", f"{versions}; written {provenance.get('created', '')}.", ""]
    return str(ModelCard.from_template(card_data, template_str="---\n{{ card_data }}\n---\n\n" + "\n".join(lines)))


def write_card(output: Path | str, provenance: dict, class_names: list[str] | None = None, folder: bool = False):
    """Write the card of `output` (card_path), atomically; returns its path."""
    from ganedit.store.atomic import atomic_write

    path = check_card_target(output, folder)
    text = card_text(output, provenance, class_names)
    return atomic_write(path, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))


def _licence_paragraph(licence: dict) -> str:
    reasons = "; ".join(licence.get("from", [])) or "not recorded"
    title = licence["title"] + (f" ({licence['link']})" if licence.get("link") else "")
    if licence.get("non_commercial"):
        also = f" Other parents' licences: {', '.join(licence['also'])}." if licence.get("also") else ""
        return (f"**{title}: non-commercial use only.** A parent is under NVIDIA's non-commercial licence, and "
                f"it carries over to this edited model. From: {reasons}.{also}")  # fmt: skip
    if licence["id"] == "unknown":
        return (f"**Unknown.** ganedit could not tell the licence of a parent ({reasons}). The licence of the "
                "weights it was trained or converted from applies (NVIDIA's official StyleGAN2 weights: the NVIDIA "
                "Source Code License-NC, non-commercial); check it before sharing this model.")  # fmt: skip
    return f"{title}, inherited from the parents: {reasons}."
