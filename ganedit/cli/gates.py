"""Gates (`--fail-under METRIC=VALUE`, `--fail-over METRIC=VALUE`) and `--fid-against DIR`, shared by
`ganedit eval` and every editing command.

A gate names a figure of the command's report: a key of its JSON (`pul`, `fd_oracle_after`), a dotted
path into it for nested figures (`classes.toy-stylegan2-warm.cocktail.accuracy`: list rows go by their
`class`), or, for `ganedit eval`, a figure's name (`fid`). The outputs and the report are written first;
a missed gate then raises GateMissed (exit 3), a gate on a figure the report lacks a one-line error (2).
"""

import math
from dataclasses import dataclass
from pathlib import Path

import click
import torch

from ganedit.cli.console import stderr_console, stdout_console
from ganedit.errors import GaneditError, GateMissed


@dataclass(frozen=True)
class Gate:
    metric: str
    bound: float
    under: bool  # True: --fail-under (fail when the value is below), False: --fail-over

    @property
    def option(self) -> str:
        return f"--fail-{'under' if self.under else 'over'} {self.metric}={self.bound:g}"

    def missed(self, value: float) -> bool:
        return math.isnan(value) or (value < self.bound if self.under else value > self.bound)


def gate_options(function):
    """--fail-under / --fail-over, repeatable."""
    for name, word in (("fail_over", "above"), ("fail_under", "below")):
        function = click.option(
            "--" + name.replace("_", "-"),
            name,
            multiple=True,
            metavar="METRIC=VALUE",
            help=f"Exit 3 (after writing the outputs and the report) when METRIC is {word} VALUE; repeatable.",
        )(function)
    return function


def fid_options(function):
    """--fid-against DIR and --inception-weights FILE, on every editing command."""
    function = click.option(
        "--inception-weights",
        type=click.Path(dir_okay=False, path_type=Path),
        help="A local copy of torch-fidelity's Inception weights (else the torch hub cache, fetched once).",
    )(function)
    return click.option(
        "--fid-against",
        type=click.Path(path_type=Path),
        metavar="DIR",
        help="Add Inception FID (torch-fidelity) of the edited model's samples against the real images in DIR, "
        "as many samples as images (at most 50,000).",
    )(function)


def parse_gates(fail_under=(), fail_over=()) -> list[Gate]:
    gates = []
    for under, items in ((True, fail_under), (False, fail_over)):
        for item in items or ():
            name, separator, number = str(item).partition("=")
            try:
                bound = float(number)
                if not separator or not name.strip() or not math.isfinite(bound):
                    raise ValueError
            except ValueError:
                option = "--fail-under" if under else "--fail-over"
                raise GaneditError(f"{option} expects METRIC=NUMBER (e.g. pul=80), got {item!r}") from None
            gates.append(Gate(name.strip(), bound, under))
    return gates


def flat_figures(report: dict) -> dict[str, float]:
    """Every number in a report by its dotted path (list rows by their `class`, else their index); an
    eval report's figures also by their plain names."""
    out: dict[str, float] = {}

    def walk(value, path):
        if isinstance(value, bool) or value is None:
            return
        if isinstance(value, int | float):
            out[path] = float(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                key = item.get("class", index) if isinstance(item, dict) else index
                walk(item, f"{path}.{key}" if path else str(key))

    walk(report, "")
    for name, figure in (report.get("figures") or {}).items():
        if isinstance(figure, dict) and isinstance(figure.get("value"), int | float):
            out[name] = float(figure["value"])
    return out


def check_gates(report: dict, gates: list[Gate]) -> None:
    """Raise GateMissed naming every missed gate; a gate on a figure the report lacks: one-line error."""
    if not gates:
        return
    figures = flat_figures(report)
    missing = [gate.metric for gate in gates if gate.metric not in figures]
    if missing:
        known = ", ".join(sorted(name for name in figures if "." not in name)[:30])
        raise GaneditError(
            f"gate on {', '.join(missing)}: not computed in this run (the outputs are written); figures it has: {known}"
        )
    missed = [f"{gate.metric} = {figures[gate.metric]:.6g} ({gate.option})" for gate in gates
              if gate.missed(figures[gate.metric])]  # fmt: skip
    if missed:
        raise GateMissed("gate missed: " + "; ".join(missed) + " (the outputs and the report are written)")


class EditChecks:
    """What an editing command checks around its run: gates, parsed before any work, and `--fid-against`
    (Inception and the real images loaded before training, so a missing file stops the run first)."""

    def __init__(self, options: dict, device: torch.device, generator: torch.nn.Module):
        self.gates = parse_gates(options.get("fail_under"), options.get("fail_over"))
        self.folder = options.get("fid_against")
        if self.folder is None and any(gate.metric.startswith("fid") for gate in self.gates):
            raise GaneditError("a gate on fid needs --fid-against DIR (real images to compute FID against)")
        self.inception = self.stats = None
        if self.folder is not None:
            from ganedit.engine.sources import load_image_folder
            from ganedit.generators.sampling import resolution
            from ganedit.judges.fidelity import PAPER_FID_SAMPLES, load_inception, reference_from_images

            self.inception = load_inception(options.get("inception_weights"), device)
            images = load_image_folder(
                self.folder, resolution(generator), limit=PAPER_FID_SAMPLES, minimum=2
            )  # uint8, as Inception takes it: a quarter of float32's memory
            self.stats = reference_from_images(self.inception, images, str(self.folder))

    def add_fid(self, report: dict, generators: dict, seed: int, classes=None) -> None:
        """Inception FID of each generator's samples (same latents, as many as real images) against the
        folder: `fid` for one generator, `fid_NAME` for several (unlearn: fid_before, fid_after)."""
        if self.stats is None:
            return
        from ganedit.generators.sampling import generate, sample_latents
        from ganedit.judges.fidelity import standard_metrics
        from ganedit.settings import derived_seed

        count = self.stats.samples
        first = next(iter(generators.values()))
        z = sample_latents(first, count, derived_seed(seed, "fid"))
        labels = classes(count) if classes is not None else None
        stderr_console().print(f"Inception FID on {count} samples against {self.folder} ...")
        for name, generator in generators.items():
            pool, logits = self.inception(generate(generator, z, labels))
            key = "fid" if len(generators) == 1 else f"fid_{name}"
            report[key] = standard_metrics(["fid"], pool, logits, self.stats)["fid"]
        report["fid_reference"] = f"{count} images of {self.folder}, {self.inception.name} pool3 (torch-fidelity)"
        report["fid_samples"] = count

    def finish(self, report: dict, as_json: bool) -> None:
        """After the report is out: print the FID lines (tables), then check the gates."""
        if not as_json and "fid_samples" in report:
            for key in sorted(k for k in report if k == "fid" or k.startswith("fid_") and k[4:] not in
                              ("reference", "samples")):  # fmt: skip
                stdout_console().print(f"Inception FID ({key}): {report[key]:.3f} vs {report['fid_reference']}, "
                                       f"{report['fid_samples']} samples")  # fmt: skip
        check_gates(report, self.gates)


def distance_rows(report: dict) -> list[tuple[str, str, float, float]]:
    """(kind, space, before, after) of each judge- or CLIP-space distance in a report (`fd_oracle_before`, ...)."""
    rows = []
    for key in report:
        if key[:3] in ("fd_", "kd_") and key.endswith("_before") and key[:-7] + "_after" in report:
            rows.append((key[:2], key[3:-7], report[key], report[key[:-7] + "_after"]))
    return rows
