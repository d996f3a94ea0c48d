"""Generator and discriminator architectures, in pure PyTorch.

Every architecture class carries:
- `arch`: a short unique string ("biggan-deep", "stylegan2-generator", "stylegan2-discriminator");
- `config`: a dataclass instance holding every constructor argument, so that
  `build(arch, dataclasses.asdict(module.config))` rebuilds an identical module and
  `load_state_dict(strict=True)` fills it. ganedit's own checkpoint format relies on exactly this;
- `least_elements(config)`: a lower bound of its tensors' elements, computed from the config alone.

Building from a file never trusts the file: `build` checks the config against the Config dataclass
(every key, every type, then the architecture's own ranges in the Config's __post_init__), refuses a
model that needs more memory than the machine has before allocating it, and compares the module's
tensor shapes with the file's before a tensor is read.
"""

import contextlib
import dataclasses
import math
import os
import types
import typing
from collections.abc import Mapping, Sequence

import torch

ARCHITECTURES: dict[str, type] = {}
# What malformed data in a file can raise while a reader interprets it or builds a module from it.
FILE_DATA_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    ZeroDivisionError,
    RecursionError,
    MemoryError,
    RuntimeError,
)
# A model needs its tensors twice while it loads: once as read from the file, once in the module.
COPIES_WHILE_LOADING = 2
BYTES_PER_ELEMENT = 4  # float32, what every architecture is built in
# A config that needs more than this and more weights than its file holds is refused unbuilt; a smaller one is
# built, to list exactly which tensors differ.
CHEAP_BUILD_BYTES = 2**30


def register(cls: type) -> type:
    """Class decorator: make an architecture buildable by its `arch` name."""
    ARCHITECTURES[cls.arch] = cls
    return cls


def build(
    arch: str,
    config: object,
    source: str = "the config",
    shapes: Mapping[str, Sequence[int] | None] | None = None,
    hint: str = "the file is damaged or belongs to a different model",
) -> torch.nn.Module:
    """Build an architecture from its name and the plain-dict form of its config, as read from `source`.

    `shapes` (a file's tensor names and shapes, from its header or its loaded state) are compared with the
    module's (`hint`: what to do when they differ). Every problem is a one-line CheckpointFormatError or
    ArchitectureMismatchError naming `source`.
    """
    from ganedit.errors import ArchitectureMismatchError, CheckpointFormatError

    _import_all()
    if not isinstance(arch, str) or arch not in ARCHITECTURES:
        raise CheckpointFormatError(
            f"{source}: unknown architecture {arch!r} (known: {', '.join(sorted(ARCHITECTURES))}); "
            "the file was written by a newer ganedit (upgrade ganedit) or is damaged"
        )
    cls = ARCHITECTURES[arch]
    checked = checked_config(cls, config, source)
    least = cls.least_elements(checked)
    found = None if shapes is None else {key: None if shape is None else list(shape) for key, shape in shapes.items()}
    held = None if found is None else sum(math.prod(shape) for shape in found.values() if shape is not None)
    if held is not None and least > held and BYTES_PER_ELEMENT * least > CHEAP_BUILD_BYTES:
        raise ArchitectureMismatchError(
            f"{source}: its {arch} config needs at least {_amount(least)} weights, but the file holds only "
            f"{_amount(held)}; {hint}"
        )
    require_memory(BYTES_PER_ELEMENT * least, source)
    with file_data_errors(source, f"the {arch} it describes cannot be built"):
        module = cls(checked)
    if found is not None:
        _refuse_mismatch(module, found, source, hint)
    return module


def checked_config(cls: type, config: object, source: str):
    """`cls.Config` from a file's plain-dict config: exactly its keys (defaults may be left out), each of
    its declared type; the architecture's own range checks run in the Config's __post_init__."""
    from ganedit.errors import CheckpointFormatError

    fields = {spec.name: spec for spec in dataclasses.fields(cls.Config)}
    how_to_fix = "the file is damaged or was not written by ganedit; convert the original checkpoint again"
    if not isinstance(config, dict):
        raise CheckpointFormatError(
            f"{source}: the {cls.arch} config is a {type(config).__name__}, not an object; {how_to_fix}"
        )
    unknown = sorted(str(key) for key in config if key not in fields)
    if unknown:
        raise CheckpointFormatError(
            f"{source}: unknown {cls.arch} config key(s) {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(fields)}); {how_to_fix}"
        )
    required = [
        name
        for name, spec in fields.items()
        if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in config]
    if missing:
        raise CheckpointFormatError(f"{source}: the {cls.arch} config lacks {', '.join(missing)}; {how_to_fix}")
    for name, value in config.items():
        if not _has_type(value, fields[name].type):
            raise CheckpointFormatError(
                f"{source}: {cls.arch} config {name} = {_shown(value)} is not {_type_name(fields[name].type)}; "
                f"{how_to_fix}"
            )
    try:
        return cls.Config(**config)
    except (ValueError, TypeError, CheckpointFormatError) as error:
        raise CheckpointFormatError(f"{source}: invalid {cls.arch} config: {error}; {how_to_fix}") from None


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
    _refuse_mismatch(module, {key: _shape(value) for key, value in state.items()}, source, hint)
    module.load_state_dict(state, strict=True)


@contextlib.contextmanager
def file_data_errors(source: str, what: str = "its contents are malformed"):
    """Turn what malformed file data raises while it is interpreted (FILE_DATA_ERRORS) into one
    CheckpointFormatError line naming `source`. GPU out-of-memory errors pass through (exit code 4)."""
    from ganedit.errors import CheckpointFormatError
    from ganedit.store.safe_torch import first_line

    try:
        yield
    except torch.OutOfMemoryError:
        raise
    except FILE_DATA_ERRORS as error:
        raise CheckpointFormatError(
            f"{source}: {what} ({type(error).__name__}: {first_line(error)}); the file is damaged or not a "
            "checkpoint ganedit can read: download it again or re-export it"
        ) from error


def require_memory(tensor_bytes: int, source: str) -> None:
    """Refuse, before allocating it, a model whose tensors need more memory than is available (each is held
    twice while it loads: as read from the file and in the module)."""
    from ganedit.errors import CheckpointFormatError
    from ganedit.store.atomic import byte_size

    needed = COPIES_WHILE_LOADING * tensor_bytes
    available = available_memory()
    if available is not None and needed > available:
        raise CheckpointFormatError(
            f"{source}: loading this model needs at least {byte_size(needed)} of memory, but only "
            f"{byte_size(available)} is available; if its config is right, load it on a machine with more "
            "memory, otherwise the file is damaged"
        )


def available_memory() -> int | None:
    """Bytes of memory this process can still allocate (MemAvailable, within a cgroup's limit), None if unknown."""
    available = None
    try:
        with open("/proc/meminfo") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    try:
        with open("/sys/fs/cgroup/memory.max") as limit, open("/sys/fs/cgroup/memory.current") as used:
            text = limit.read().strip()
            if text != "max":
                available = min(available, int(text) - int(used.read().strip()))
    except (OSError, ValueError):
        pass
    return available


def _refuse_mismatch(
    module: torch.nn.Module,
    found: dict[str, list[int] | None],
    source: str,
    hint: str = "the file is damaged or belongs to a different model",
) -> None:
    """ArchitectureMismatchError listing a few missing, unexpected and mis-shaped tensors, if there are any."""
    from ganedit.errors import ArchitectureMismatchError

    expected = {key: list(tensor.shape) for key, tensor in module.state_dict().items()}
    missing = [key for key in expected if key not in found]
    unexpected = [str(key) for key in found if key not in expected]
    misshaped = [
        f"{key} {found[key]} (expected {expected[key]})"
        for key in expected
        if key in found and found[key] != expected[key]
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


def _shape(value: object) -> list[int] | None:
    return list(value.shape) if isinstance(value, torch.Tensor) else None


def _has_type(value: object, annotation: object) -> bool:
    """Whether a JSON value has a Config field's declared type (int, float, bool, None, list[...], unions)."""
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, argument) for argument in arguments)
    if annotation is None or annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if annotation is list or origin is list:
        return isinstance(value, list) and all(_has_type(item, arguments[0]) for item in value if arguments)
    return isinstance(value, annotation) if isinstance(annotation, type) else False


def _type_name(annotation: object) -> str:
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(argument) for argument in arguments)
    if annotation is type(None):
        return "null"
    if origin is list:
        plurals = {int: "integers", float: "finite numbers", bool: "booleans"}
        return f"a list of {plurals.get(arguments[0], _type_name(arguments[0]))}"
    names = {int: "an integer", float: "a finite number", bool: "true or false", list: "a list"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _shown(value: object, limit: int = 60) -> str:
    if isinstance(value, int) and abs(value) >= 2**64:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _amount(count: int) -> str:
    return f"{count:,}" if count < 10**15 else f"about 2**{count.bit_length() - 1}"


def _import_all() -> None:
    from ganedit.generators import biggan_deep, stylegan2  # noqa: F401  (registers the architectures)
