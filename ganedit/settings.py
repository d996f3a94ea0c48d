"""Settings declared once, and recipes.

A procedure's settings are a dataclass whose fields are declared with `setting(...)`: the default, the
type (the annotation), the valid range or choices and a help text. From that one declaration come

- the command-line options (`adapt_steps` <-> `--adapt-steps`; `click_options`),
- the validation of values from the command line, from Python and from recipe files (`check`),
- a recipe's sections (`from_mapping`) and the resolved recipe written into a model's metadata
  (`to_toml`).

A recipe is a TOML file: the run's inputs and outputs at the top level, the procedure's settings under
`[settings]` (see recipes/README.md). Unknown keys, wrong types and values out of range are refused
before any model is loaded, with one line naming the key and the file.

Seeds: every use of randomness derives its own seed from the run's seed and a named purpose
(`derived_seed(seed, "positives")`), never `seed + 7`.
"""

import dataclasses
import hashlib
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field
from pathlib import Path

from ganedit.errors import GaneditError

SEED_RANGE = (0, 2**63 - 1)
COMMAND_LINE = "the command line"  # the `where` of values given as options


def setting(
    default=MISSING,
    help: str = "",
    *,
    min: float | None = None,
    max: float | None = None,
    min_open: bool = False,
    max_open: bool = False,
    choices: tuple | None = None,
    aliases: tuple[str, ...] = (),
    metavar: str | None = None,
    option: bool = True,
) -> Field:
    """A settings field: default, help, valid range (min / max, open or closed) or choices.

    aliases: further option names (e.g. ("--classifier",)); option=False keeps the field out of the
    command line (a value only Python or a recipe sets). A list default becomes a default factory.
    """
    metadata = {
        "help": help,
        "min": min,
        "max": max,
        "min_open": min_open,
        "max_open": max_open,
        "choices": tuple(choices) if choices is not None else None,
        "aliases": tuple(aliases),
        "metavar": metavar,
        "option": option,
    }
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def derived_seed(seed: int, purpose: str) -> int:
    """An independent seed for each use of randomness, derived from the run's seed and a named purpose."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{purpose}".encode()).digest()[:7], "little")


# ---------------------------------------------------------------------------------------------------
# Types and values


def _kind(annotation) -> tuple[str, object]:
    """(kind, detail): ("scalar", type), ("optional", type), ("list", item type) or ("pair", item type)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return "optional", inner
    if origin is list:
        return "list", args[0]
    if origin is dict:
        return "mapping", args[1]
    if origin is tuple:
        return "pair", args[0]
    return "scalar", annotation


def _type_name(kind: str, item) -> str:
    name = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[item]
    return {"scalar": name, "optional": name, "list": f"a list of {name.split(' ', 1)[-1]}s",
            "pair": f"a pair of {name.split(' ', 1)[-1]}s",
            "mapping": f"a table of names to {name.split(' ', 1)[-1]}s"}[kind]  # fmt: skip


def _scalar(value, item, describe: Callable[[str], str]):
    if item is bool:
        if isinstance(value, bool):
            return value
    elif item is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif item is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise GaneditError(describe(f"must be a finite number, got {value!r}"))
            return float(value)
    elif item is str:
        if isinstance(value, str):
            return value
    raise GaneditError(describe(f"must be {_type_name('scalar', item)}, got {value!r}"))


def check_value(spec: Field, value, where: str = ""):
    """The value, checked against the field's type, range and choices (ints accepted as floats)."""
    from_file = where not in ("", COMMAND_LINE)
    name = spec.name if from_file else "--" + spec.name.replace("_", "-")

    def describe(problem: str) -> str:
        return f"{where}: {name} {problem}" if from_file else f"{name} {problem}"

    kind, item = _kind(spec.type)
    if kind == "optional" and value is None:
        return None
    if kind == "mapping":
        if isinstance(value, list | tuple):  # the command line's repeated NAME=VALUE
            value = dict(_pair_item(item, describe) for item in value)
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise GaneditError(describe(f"must be {_type_name(kind, item)}, got {value!r}"))
        return {k: _check_scalar(spec, _scalar(v, item, describe), describe) for k, v in value.items()}
    if kind in ("list", "pair"):
        if not isinstance(value, list | tuple):
            raise GaneditError(describe(f"must be {_type_name(kind, item)}, got {value!r}"))
        values = [_check_scalar(spec, _scalar(v, item, describe), describe) for v in value]
        if kind == "pair":
            if len(values) != 2:
                raise GaneditError(describe(f"must be {_type_name(kind, item)}, got {value!r}"))
            return tuple(values)
        return values
    return _check_scalar(spec, _scalar(value, item, describe), describe)


def _pair_item(item, describe) -> tuple[str, float]:
    name, separator, number = str(item).partition("=")
    try:
        if not separator or not name.strip():
            raise ValueError
        return name.strip(), float(number)
    except ValueError:
        raise GaneditError(describe(f"expects NAME=NUMBER (e.g. mapping=0.5), got {item!r}")) from None


def _check_scalar(spec: Field, value, describe):
    meta = spec.metadata
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise GaneditError(describe(f"must be one of {', '.join(map(str, meta['choices']))}; got {value!r}"))
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    low, high = meta.get("min"), meta.get("max")
    if spec.name == "seed" and low is None:
        low, high = SEED_RANGE
    if low is not None and (value < low or (meta.get("min_open") and value == low)):
        relation = "above" if meta.get("min_open") else "at least"
        raise GaneditError(describe(f"must be {relation} {low}, got {value!r}"))
    if high is not None and (value > high or (meta.get("max_open") and value == high)):
        relation = "below" if meta.get("max_open") else "at most"
        raise GaneditError(describe(f"must be {relation} {high}, got {value!r}"))
    return value


def check(settings, where: str = "") -> None:
    """Check every field of a settings dataclass in place (types coerced: ints to floats, lists to pairs)."""
    for spec in dataclasses.fields(settings):
        object.__setattr__(settings, spec.name, check_value(spec, getattr(settings, spec.name), where))


def checked(cls, values: Mapping, where: str) -> dict:
    """The values of a mapping (a recipe section) checked against the fields of cls; unknown keys refused."""
    known = {spec.name: spec for spec in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise GaneditError(f"{where}: unknown setting {key!r}; known: {', '.join(sorted(known))}")
    return {key: check_value(known[key], value, where) for key, value in values.items()}


def from_mapping(cls, values: Mapping, where: str):
    """An instance of the settings dataclass from a mapping, checked; a missing required field is refused."""
    values = checked(cls, values, where)
    for spec in dataclasses.fields(cls):
        if spec.name not in values and spec.default is MISSING and spec.default_factory is MISSING:
            option = "--" + spec.name.replace("_", "-")
            raise GaneditError(f"{option} is required (or `{spec.name}` in a recipe)")
    return cls(**values)


def as_dict(settings) -> dict:
    """The settings as plain values (tuples as lists), as recipes and provenance store them."""
    return {
        spec.name: list(value) if isinstance(value, tuple) else value
        for spec in dataclasses.fields(settings)
        for value in [getattr(settings, spec.name)]
    }


# ---------------------------------------------------------------------------------------------------
# Command-line options, generated from the fields


def click_options(cls):
    """A decorator adding one click option per field of cls (those with option=True).

    Every option defaults to None, so a command can tell given options from absent ones and lay them
    over a recipe. Help texts show the dataclass default.
    """
    import click

    decorators = []
    for spec in dataclasses.fields(cls):
        if spec.metadata.get("option", True):
            decorators.append(_option(click, spec))

    def apply(function):
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def _option(click, spec: Field):
    meta = spec.metadata
    name = "--" + spec.name.replace("_", "-")
    kind, item = _kind(spec.type)
    default = spec.default if spec.default is not MISSING else (
        spec.default_factory() if spec.default_factory is not MISSING else None
    )  # fmt: skip
    help_text = meta.get("help", "")
    if default is not None and default != [] and default != {} and kind != "pair":
        help_text += f" [default: {_shown(default)}]"
    elif kind == "pair":
        help_text += f" [default: {' '.join(map(_shown, default))}]"
    names = [name, *meta.get("aliases", ())]
    if item is bool and kind == "scalar":
        return click.option(f"{name}/--no-{spec.name.replace('_', '-')}", spec.name, default=None, help=help_text)
    click_type = {int: click.INT, float: click.FLOAT, str: click.STRING}[item]
    if meta.get("choices") is not None:
        click_type = click.Choice([str(c) for c in meta["choices"]])
    kwargs = {"type": click_type, "default": None, "help": help_text, "metavar": meta.get("metavar")}
    if kind in ("list", "mapping"):
        kwargs.update(multiple=True, default=())
    if kind == "mapping":
        kwargs.update(type=click.STRING, metavar=meta.get("metavar") or "NAME=VALUE")
    if kind == "pair":
        kwargs.update(nargs=2)
    return click.option(*names, spec.name, **kwargs)


def _shown(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def given_options(cls, values: Mapping, include_hidden: bool = False) -> dict:
    """The fields of cls that the command line set (not None; lists not empty), as checked values.

    Fields without an option (option=False) are skipped unless include_hidden (a command's positional
    arguments, which it passes in itself).
    """
    out = {}
    for spec in dataclasses.fields(cls):
        if not (include_hidden or spec.metadata.get("option", True)):
            continue
        value = values.get(spec.name)
        if value is None or (
            isinstance(value, tuple | list) and not value and _kind(spec.type)[0] in ("list", "mapping")
        ):
            continue
        out[spec.name] = check_value(spec, list(value) if isinstance(value, tuple) else value)
    return out


# ---------------------------------------------------------------------------------------------------
# TOML


def read_toml(path: Path | str) -> dict:
    """A TOML file as a dict; one-line errors for a missing, unreadable or malformed file."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    path = Path(path)
    try:
        with path.open("rb") as stream:
            return tomllib.load(stream)
    except FileNotFoundError:
        raise GaneditError(f"{path}: no such recipe file; check the path") from None
    except IsADirectoryError:
        raise GaneditError(f"{path}: is a folder, not a recipe file") from None
    except OSError as error:
        raise GaneditError(f"{path}: cannot read the recipe ({error.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise GaneditError(f"{path}: not valid TOML ({error})") from None
    except RecursionError:
        raise GaneditError(f"{path}: values nested too deeply to be a recipe; check the file") from None


def to_toml(recipe: Mapping) -> str:
    """A recipe dict (scalars, lists, and one level of tables) as TOML text."""
    lines = [
        f"{key} = {_toml_value(value)}"
        for key, value in recipe.items()
        if value is not None and not isinstance(value, Mapping)
    ]
    for key, value in recipe.items():
        if isinstance(value, Mapping):
            lines += ["", f"[{key}]"] + [f"{k} = {_toml_value(v)}" for k, v in value.items() if v is not None]
    return "\n".join(lines) + "\n"


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else _toml_value(key)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")
