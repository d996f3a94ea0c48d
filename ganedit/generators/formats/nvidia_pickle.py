"""NVIDIA StyleGAN2 / StyleGAN2-ADA network pickles (`.pkl`), read without executing anything.

A network pickle is `pickle.dump(dict(G, D, G_ema, augment_pipe, training_set_kwargs))` in which each
network is written by NVIDIA's `torch_utils.persistence`: a call to `_reconstruct_persistent_obj(meta)`
whose `meta` carries the network's Python source (executed by the official loader), its class name
and its `__dict__` (constructor arguments, plain attributes, `_parameters`, `_buffers`, `_modules`).

`RestrictedUnpickler` resolves only the globals such files need, each to a harmless stand-in:
`_reconstruct_persistent_obj` becomes `PersistentObject.from_meta`, which keeps the data and drops the
source unread; tensors are rebuilt by torch's own helpers from storages that are themselves read with
`torch.load(weights_only=True)`; numpy scalars become Python numbers; `dnnlib.util.EasyDict` is a
dict. Any other global is refused with UnsafeCheckpointError before anything is called, and neither
`dnnlib` nor `torch_utils` is ever imported.

From the recovered `G_ema` and `D`, ganedit builds its own StyleGAN2 modules: sizes come from the
attributes the networks recorded (their constructor arguments after defaults) and the tensor shapes,
tensors keep NVIDIA's names (ganedit's layout is NVIDIA's). The networks compute in float32, which is
NVIDIA's `force_fp32=True`; `num_fp16_res` only matters for their mixed-precision GPU path.
"""

import collections
import io
import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy
import torch
import torch._utils

from ganedit.errors import CheckpointFormatError, GaneditError, UnsafeCheckpointError
from ganedit.generators.formats.bundle import ModelBundle
from ganedit.generators.ops import filter_taps, setup_filter
from ganedit.generators.registry import build, load_exact_state
from ganedit.generators.stylegan2 import (
    MAX_RESOLUTION,
    StyleGAN2Discriminator,
    StyleGAN2Generator,
    block_resolutions,
)
from ganedit.store.safe_torch import first_line

FORMAT = "stylegan2 (nvidia .pkl)"
SUPPORTED = (
    "ganedit reads StyleGAN2 / StyleGAN2-ADA network pickles: a 'Generator' made of a 'MappingNetwork' and a "
    "'SynthesisNetwork' of 'skip' SynthesisBlocks, and a 'resnet' 'Discriminator' (StyleGAN3 is not supported)"
)


@dataclass
class PersistentObject:
    """What ganedit keeps of one `torch_utils.persistence` object: its data, never its code."""

    class_name: str  # e.g. "Generator", "SynthesisBlock"
    init_args: list  # positional constructor arguments
    init_kwargs: dict  # keyword constructor arguments
    attributes: dict  # other plain fields of its __dict__ (sizes, flags, gains)
    parameters: dict  # name -> tensor or None
    buffers: dict  # name -> tensor or None
    non_persistent_buffers: set  # buffer names that a state dict leaves out
    modules: dict  # name -> PersistentObject or None

    @classmethod
    def from_meta(cls, meta: object) -> "PersistentObject":
        """Stand-in for `_reconstruct_persistent_obj(meta)`: keeps class name and state, ignores `module_src`."""
        if not (isinstance(meta, dict) and meta.get("type") == "class" and isinstance(meta.get("state"), dict)):
            raise CheckpointFormatError("a persistent object in the pickle is not a class instance with a state dict")
        state = meta["state"]
        return cls(
            class_name=str(meta.get("class_name")),
            init_args=list(state.get("_init_args", ())),
            init_kwargs=dict(state.get("_init_kwargs", {})),
            attributes={key: value for key, value in state.items() if not key.startswith("_") and key != "training"},
            parameters=dict(state.get("_parameters", {})),
            buffers=dict(state.get("_buffers", {})),
            non_persistent_buffers=set(state.get("_non_persistent_buffers_set", ())),
            modules=dict(state.get("_modules", {})),
        )

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """The tensors `module.state_dict()` would give: parameters, persistent buffers, then children."""
        tensors = {prefix + name: tensor for name, tensor in self.parameters.items() if tensor is not None}
        tensors.update(
            (prefix + name, tensor)
            for name, tensor in self.buffers.items()
            if tensor is not None and name not in self.non_persistent_buffers
        )
        for name, module in self.modules.items():
            if isinstance(module, PersistentObject):
                tensors.update(module.state_dict(f"{prefix}{name}."))
        return tensors


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
    """torch._utils._rebuild_tensor_v2 for a real storage, without backward hooks (which would be callables)."""
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise CheckpointFormatError(f"a tensor in the pickle is built from a {type(storage).__name__}, not a storage")
    if backward_hooks:
        raise UnsafeCheckpointError("refused to load: a tensor in the pickle carries backward hooks (code)")
    if metadata is not None and not isinstance(metadata, dict):
        raise CheckpointFormatError("a tensor in the pickle has malformed metadata")
    if not _fits(storage, storage_offset, size, stride):
        raise CheckpointFormatError(
            f"a tensor in the pickle claims shape {_shown(size)} at offset {_shown(storage_offset)}, beyond its "
            f"storage of {_elements(storage)} elements (torch would grow the storage to fit)"
        )
    return torch._utils._rebuild_tensor_v2(
        storage, storage_offset, size, stride, False, collections.OrderedDict(), metadata
    )


def _fits(storage, offset: object, size: object, stride: object) -> bool:
    """Whether a tensor view (offset, size, stride: non-negative integers) lies within its storage."""

    def whole(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    if not (whole(offset) and isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)):
        return False
    if not all(whole(value) for value in (*size, *stride)):
        return False
    if 0 in size:
        return offset <= _elements(storage)
    return offset + sum((extent - 1) * step for extent, step in zip(size, stride, strict=True)) < _elements(storage)


def _elements(storage) -> int:
    """A storage's size in elements (bytes for an untyped one), without TypedStorage's deprecation warning."""
    return storage._size() if isinstance(storage, torch.storage.TypedStorage) else storage.nbytes()


def _shown(value: object) -> str:
    text = repr(value) if not isinstance(value, int) or abs(value) < 2**64 else "beyond 2**64"
    return text if len(text) <= 60 else text[:57] + "..."


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
    """A parameter's tensor (`_rebuild_parameter` / `_rebuild_parameter_with_state`); extra state ignored."""
    if not isinstance(data, torch.Tensor):
        raise CheckpointFormatError(f"a parameter in the pickle wraps a {type(data).__name__}, not a tensor")
    if backward_hooks:
        raise UnsafeCheckpointError("refused to load: a parameter in the pickle carries backward hooks (code)")
    return data


def _load_storage(data: object):
    """Stand-in for `torch.storage._load_from_bytes`: the bytes are a `torch.save`d storage, read weights-only."""
    if not isinstance(data, bytes):
        raise CheckpointFormatError(f"a storage in the pickle is a {type(data).__name__}, not bytes")
    try:
        storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeCheckpointError(
            f"refused to load: a tensor storage in the pickle is not plain data ({first_line(error)})"
        ) from None
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise CheckpointFormatError(f"a storage in the pickle holds a {type(storage).__name__}, not a storage")
    return storage


def _numpy_scalar(dtype: object, data: object = None) -> int | float | bool | complex:
    """Stand-in for numpy's scalar reconstructor, numeric dtypes only, as a Python number."""
    if not (
        isinstance(dtype, numpy.dtype) and not dtype.hasobject and dtype.kind in "biufc" and isinstance(data, bytes)
    ):
        raise CheckpointFormatError(f"the pickle holds a numpy scalar of unsupported type {dtype!r}")
    return numpy.frombuffer(data, dtype=dtype, count=1)[0].item()


ALLOWED_GLOBALS = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): PersistentObject.from_meta,
    ("dnnlib.util", "EasyDict"): dict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,  # pickles written with numpy 1.x
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,  # numpy 2.x
    ("numpy", "dtype"): numpy.dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only ALLOWED_GLOBALS (to stand-ins) and refuses every other global."""

    def __init__(self, stream, path: Path):
        super().__init__(stream)
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafeCheckpointError(
                f"{self.path}: refused to load: the pickle references '{module}.{name}', which ganedit never "
                "executes; only StyleGAN2 network pickles (networks, tensors, numbers) can be read"
            )
        return ALLOWED_GLOBALS[(module, name)]


def load_network_pickle(path: Path) -> object:
    """The unpickled contents (for a network pickle, a dict whose networks are PersistentObjects)."""
    try:
        with open(path, "rb") as stream:
            return RestrictedUnpickler(stream, path).load()
    except GaneditError as error:
        if str(path) in str(error):
            raise
        raise type(error)(f"{path}: {error}") from None
    except OSError as error:
        raise GaneditError(f"{path}: cannot read ({error.strerror})") from None
    except torch.OutOfMemoryError:
        raise
    except Exception as error:  # malformed data can fail anywhere inside unpickling; none of it ran code
        raise CheckpointFormatError(
            f"{path}: not a readable network pickle, it may be truncated or damaged ({first_line(error)}); "
            "download it again"
        ) from None


def read_nvidia_pickle(path: Path) -> ModelBundle:
    """Read an NVIDIA StyleGAN2(-ADA) network pickle: generator from G_ema, discriminator from D (if any)."""
    contents = load_network_pickle(path)
    if not (isinstance(contents, dict) and isinstance(contents.get("G_ema"), PersistentObject)):
        found = f"keys {sorted(map(str, contents))[:8]}" if isinstance(contents, dict) else type(contents).__name__
        raise CheckpointFormatError(f"{path}: not a StyleGAN2 network pickle (no 'G_ema' network; found {found})")
    generator = _build_generator(contents["G_ema"], path)
    networks = {name: contents[name] for name in ("G_ema", "D") if isinstance(contents.get(name), PersistentObject)}
    discriminator = _build_discriminator(networks["D"], path) if "D" in networks else None
    metadata = {"networks": {name: network.class_name for name, network in networks.items()}}
    for name, network in networks.items():
        metadata[f"{name}_init_kwargs"] = _json_safe(network.init_kwargs)
    try:
        metadata["training_set_kwargs"] = json.loads(json.dumps(contents.get("training_set_kwargs")))
    except (TypeError, ValueError, RecursionError):
        pass  # not plain data: left out of the metadata
    return ModelBundle(
        generator=generator.eval(),
        discriminator=None if discriminator is None else discriminator.eval(),
        format=FORMAT,
        source=str(path),
        metadata=metadata,
    )


def _build_generator(network: PersistentObject, path: Path) -> StyleGAN2Generator:
    _require_class(network, "Generator", "G_ema", path)
    mapping = _child(network, "mapping", "MappingNetwork", "G_ema", path)
    synthesis = _child(network, "synthesis", "SynthesisNetwork", "G_ema", path)
    resolution = _resolution(network, "G_ema", path)
    resolutions = block_resolutions(resolution)
    blocks = [_child(synthesis, f"b{res}", "SynthesisBlock", "G_ema.synthesis", path) for res in resolutions]
    for res, block in zip(resolutions, blocks, strict=True):
        if block.attributes.get("architecture") != "skip":
            raise CheckpointFormatError(
                f"{path}: G_ema.synthesis.b{res} has architecture {block.attributes.get('architecture')!r}; {SUPPORTED}"
            )
    layers = [
        block.modules[name] for block in blocks for name in ("conv0", "conv1", "torgb") if block.modules.get(name)
    ]
    config = dict(
        z_dim=_attribute(network, "z_dim", "G_ema", path),
        w_dim=_attribute(network, "w_dim", "G_ema", path),
        c_dim=_attribute(network, "c_dim", "G_ema", path),
        img_resolution=resolution,
        img_channels=_attribute(network, "img_channels", "G_ema", path),
        channels=[_tensor(blocks[0], "const", path).shape[0]]
        + [_tensor(block.modules.get("conv1"), "weight", path).shape[0] for block in blocks[1:]],
        mapping_layers=_attribute(mapping, "num_layers", "G_ema.mapping", path),
        mapping_lr_multiplier=_attribute(mapping.modules.get("fc0"), "bias_gain", "G_ema.mapping.fc0", path),
        conv_clamp=_shared_attribute(layers, "conv_clamp", "G_ema.synthesis", path),
        resample_filter=filter_taps(_tensor(blocks[0], "resample_filter", path), gain=1.0),
    )
    return _build(StyleGAN2Generator.arch, config, network, f"{path} (G_ema)", path)


def _build_discriminator(network: PersistentObject, path: Path) -> StyleGAN2Discriminator:
    _require_class(network, "Discriminator", "D", path)
    resolution = _resolution(network, "D", path)
    resolutions = block_resolutions(resolution)[:0:-1]  # resolution .. 8
    blocks = [_child(network, f"b{res}", "DiscriminatorBlock", "D", path) for res in resolutions]
    epilogue = _child(network, "b4", "DiscriminatorEpilogue", "D", path)
    for name, block in zip([f"b{res}" for res in resolutions] + ["b4"], blocks + [epilogue], strict=True):
        if block.attributes.get("architecture") != "resnet":
            raise CheckpointFormatError(
                f"{path}: D.{name} has architecture {block.attributes.get('architecture')!r}; {SUPPORTED}"
            )
    mapping = network.modules.get("mapping")
    mbstd = epilogue.modules.get("mbstd")
    layers = [
        block.modules[name] for block in blocks for name in ("fromrgb", "conv0", "conv1") if block.modules.get(name)
    ]
    config = dict(
        c_dim=_attribute(network, "c_dim", "D", path),
        img_resolution=resolution,
        img_channels=_attribute(network, "img_channels", "D", path),
        channels=[_tensor(epilogue.modules.get("conv"), "weight", path).shape[0]]
        + [_tensor(block.modules.get("conv0"), "weight", path).shape[0] for block in blocks[::-1]],
        cmap_dim=_attribute(epilogue, "cmap_dim", "D.b4", path),
        mapping_layers=0 if mapping is None else _attribute(mapping, "num_layers", "D.mapping", path),
        mapping_lr_multiplier=0.01
        if mapping is None
        else _attribute(mapping.modules.get("fc0"), "bias_gain", "D.mapping.fc0", path),
        mbstd_group_size=4 if mbstd is None else _attribute(mbstd, "group_size", "D.b4.mbstd", path),
        mbstd_num_channels=0 if mbstd is None else _attribute(mbstd, "num_channels", "D.b4.mbstd", path),
        conv_clamp=_shared_attribute(layers + [epilogue.modules.get("conv")], "conv_clamp", "D", path),
        resample_filter=filter_taps(_tensor(blocks[0], "resample_filter", path), gain=1.0),
    )
    return _build(StyleGAN2Discriminator.arch, config, network, f"{path} (D)", path)


def _build(arch: str, config: dict, network: PersistentObject, source: str, path: Path) -> torch.nn.Module:
    """The network from the config its attributes and tensor shapes give (checked), with its tensors loaded."""
    state = _without_filters(network.state_dict(), config["resample_filter"], path)
    module = build(arch, config, source, {key: getattr(tensor, "shape", None) for key, tensor in state.items()})
    load_exact_state(module, state, source)
    return module


def _without_filters(state: dict[str, torch.Tensor], taps: list[float], path: Path) -> dict[str, torch.Tensor]:
    """The state without the `resample_filter` buffers, each checked against the taps the config rebuilds."""
    expected = setup_filter(taps)
    for key, tensor in state.items():
        if key.endswith("resample_filter") and (
            tensor.shape != expected.shape or not torch.allclose(tensor.float(), expected)
        ):
            raise CheckpointFormatError(f"{path}: {key} is not the FIR filter {taps} of the other layers")
    return {key: tensor for key, tensor in state.items() if not key.endswith("resample_filter")}


def _require_class(network: object, class_name: str, where: str, path: Path) -> None:
    if not isinstance(network, PersistentObject):
        raise CheckpointFormatError(f"{path}: {where} is missing from the pickle; {SUPPORTED}")
    if network.class_name != class_name:
        raise CheckpointFormatError(
            f"{path}: {where} is a {network.class_name!r}, not a StyleGAN2 {class_name!r}; {SUPPORTED}"
        )


def _child(network: PersistentObject, name: str, class_name: str, where: str, path: Path) -> PersistentObject:
    child = network.modules.get(name)
    if not isinstance(child, PersistentObject):
        children = ", ".join(
            f"{key} ({module.class_name})"
            for key, module in network.modules.items()
            if isinstance(module, PersistentObject)
        )
        raise CheckpointFormatError(f"{path}: {where} has no {name!r} (it has {children}); {SUPPORTED}")
    _require_class(child, class_name, f"{where}.{name}", path)
    return child


def _attribute(network: PersistentObject | None, name: str, where: str, path: Path):
    if network is None or name not in network.attributes:
        raise CheckpointFormatError(f"{path}: {where} records no {name!r}; {SUPPORTED}")
    return network.attributes[name]


def _resolution(network: PersistentObject, where: str, path: Path) -> int:
    """The network's img_resolution, checked before it decides how many blocks to look for."""
    resolution = _attribute(network, "img_resolution", where, path)
    if (
        isinstance(resolution, bool)
        or not isinstance(resolution, int)
        or not 4 <= resolution <= MAX_RESOLUTION
        or resolution & (resolution - 1)
    ):
        raise CheckpointFormatError(
            f"{path}: {where} records img_resolution {_shown(resolution)}, not a power of two from 4 to "
            f"{MAX_RESOLUTION}; the file is damaged or not a StyleGAN2 network pickle"
        )
    return resolution


def _shared_attribute(networks: list, name: str, where: str, path: Path):
    """An attribute that all `networks` must share (ganedit's config holds one value per network)."""
    values = {_attribute(network, name, where, path) for network in networks}
    if len(values) != 1:
        raise CheckpointFormatError(f"{path}: the layers of {where} differ in {name} ({sorted(values, key=str)})")
    return values.pop()


def _tensor(network: PersistentObject | None, name: str, path: Path) -> torch.Tensor:
    tensors = {} if network is None else {**network.parameters, **network.buffers}
    if not isinstance(tensors.get(name), torch.Tensor):
        raise CheckpointFormatError(f"{path}: a {getattr(network, 'class_name', 'network')} has no tensor {name!r}")
    return tensors[name]


def _json_safe(value: object) -> object:
    """JSON-ready form of recorded constructor arguments (anything unusual becomes its repr)."""
    return json.loads(json.dumps(value, default=repr))
