"""StyleGAN2 generator and discriminator (Karras et al., "Analyzing and Improving the Image Quality of
StyleGAN", 2020), in pure PyTorch.

One implementation reproduces both public PyTorch sources: rosinality/stylegan2-pytorch and
NVlabs/stylegan2-ada-pytorch (config "skip" generator, "resnet" discriminator). Parameter names follow
NVIDIA's layout, and weights are stored with the sources' shared conventions (mapping weights divided
by the learning-rate multiplier, equalised-learning-rate gains applied at run time), so both readers
only rename and reshape tensors.

Generator parameters and buffers:
    mapping.embed.{weight,bias}               class embedding (c_dim > 0)
    mapping.fc{i}.{weight,bias}               mapping MLP
    mapping.w_avg                             average w, the truncation centre
    mapping.w_avg_per_class                   [c_dim, w_dim] per-class centres (config class_w_avg; merge)
    synthesis.b4.const                        learned 4x4 input
    synthesis.b{res}.{conv0,conv1}.{weight, bias, noise_strength, noise_const, affine.weight, affine.bias}
                                              (b4 has conv1 only; conv0 upsamples)
    synthesis.b{res}.torgb.{weight, bias, affine.weight, affine.bias}
Discriminator parameters:
    b{res}.fromrgb (highest res only), b{res}.{conv0, conv1, skip}    resnet blocks, res > 4
    b4.{conv, fc, out}                                                epilogue
    mapping.embed, mapping.fc{i}                                      class projection (c_dim > 0)
The FIR resampling filters are derived from the config and are not part of the state dict.
"""

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganedit.generators.ops import (
    LRELU_GAIN,
    assert_shape,
    bias_act,
    modulated_conv2d,
    normalize_2nd_moment,
    setup_filter,
    upfirdn2d,
    upsample2d,
)
from ganedit.generators.registry import register

NOISE_MODES = ("const", "random", "none")


def block_resolutions(img_resolution: int) -> list[int]:
    """4, 8, ..., img_resolution: the resolutions that have a block."""
    return [2**i for i in range(2, int(math.log2(img_resolution)) + 1)]


MAX_RESOLUTION = 2**14  # the largest img_resolution a config may ask for (published models: 1024)
MAX_MAPPING_LAYERS = 64  # the deepest mapping MLP a config may ask for (published models: 2 to 8)
MAX_FILTER_TAPS = 16  # the longest 1-D FIR filter a config may ask for (published models: 4)


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _shared_problem(config) -> str | None:
    """What is wrong with the fields both StyleGAN2 configs have, or None."""
    resolution = config.img_resolution
    if not _positive_int(resolution) or resolution < 4 or resolution & (resolution - 1) or resolution > MAX_RESOLUTION:
        return f"img_resolution must be a power of two from 4 to {MAX_RESOLUTION}, got {resolution!r}"
    expected = len(block_resolutions(resolution))
    if not isinstance(config.channels, (list, tuple)) or len(config.channels) != expected:
        return (
            f"channels must list one width per resolution 4..{resolution} ({expected} values), got {config.channels!r}"
        )
    if not all(_positive_int(width) for width in config.channels):
        return f"channels must be positive integers, got {config.channels!r}"
    if not _positive_int(config.img_channels):
        return f"img_channels must be a positive integer, got {config.img_channels!r}"
    if isinstance(config.c_dim, bool) or not isinstance(config.c_dim, int) or config.c_dim < 0:
        return f"c_dim must be an integer >= 0, got {config.c_dim!r}"
    if not _finite_number(config.mapping_lr_multiplier) or config.mapping_lr_multiplier <= 0:
        return f"mapping_lr_multiplier must be a positive number, got {config.mapping_lr_multiplier!r}"
    if config.conv_clamp is not None and (not _finite_number(config.conv_clamp) or config.conv_clamp <= 0):
        return f"conv_clamp must be a positive number or null, got {config.conv_clamp!r}"
    taps = config.resample_filter
    if (
        not isinstance(taps, (list, tuple))
        or not 1 <= len(taps) <= MAX_FILTER_TAPS
        or not all(_finite_number(tap) for tap in taps)
        or sum(taps) == 0
    ):
        return f"resample_filter must be 1 to {MAX_FILTER_TAPS} finite taps with a non-zero sum, got {taps!r}"
    return None


def _finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _mapping_layers_problem(value: object, minimum: int) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_MAPPING_LAYERS:
        return f"mapping_layers must be an integer from {minimum} to {MAX_MAPPING_LAYERS}, got {value!r}"
    return None


# ---------------------------------------------------------------------------------------------------
# Shared layers


class FullyConnectedLayer(nn.Module):
    """Linear layer with equalised learning rate: y = x @ (W * lr / sqrt(in)).T + b * lr.

    The stored weight is the trained weight divided by `lr_multiplier` (both sources store it so).
    """

    def __init__(
        self,
        in_features: int,  # input width
        out_features: int,  # output width
        lrelu: bool = False,  # leaky ReLU * sqrt(2) after the bias, else linear
        lr_multiplier: float = 1.0,  # learning-rate multiplier (0.01 in the mapping network)
        bias_init: float = 0.0,  # initial bias (1 for the style affines, so styles start near 1)
    ):
        super().__init__()
        self.lrelu = lrelu
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert_shape("FullyConnectedLayer input", x, [None, self.weight.shape[1]])
        x = F.linear(x, self.weight * self.weight_gain)  # [N, out]
        if self.lrelu:
            return bias_act(x, self.bias * self.bias_gain, lrelu=True, gain=LRELU_GAIN)
        return x + self.bias * self.bias_gain


class MappingNetwork(nn.Module):
    """z (and class label c) -> w: normalise, embed, MLP; for a generator, broadcast and truncate.

    Used by the generator (z -> ws) and by a conditional discriminator (c -> cmap, z_dim = 0).
    """

    def __init__(
        self,
        z_dim: int,  # input latent width, 0 = no z (discriminator's class projection)
        c_dim: int,  # class label width, 0 = unconditional
        w_dim: int,  # output width (and the width of every hidden layer and of the class embedding)
        num_layers: int,  # number of fully connected layers
        lr_multiplier: float,  # learning-rate multiplier of the fully connected layers
        num_ws: int | None,  # broadcast w to [N, num_ws, w_dim] and keep w_avg; None = return [N, w_dim]
        class_w_avg: bool = False,  # also keep one truncation centre per class (conditional generators)
    ):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_layers, self.num_ws = z_dim, c_dim, w_dim, num_layers, num_ws
        embed_features = w_dim if c_dim > 0 else 0
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for index in range(num_layers):
            in_features = z_dim + embed_features if index == 0 else w_dim
            self.add_module(
                f"fc{index}", FullyConnectedLayer(in_features, w_dim, lrelu=True, lr_multiplier=lr_multiplier)
            )
        if num_ws is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))
        if class_w_avg:
            if num_ws is None or c_dim == 0:
                raise ValueError("class_w_avg needs a conditional generator's mapping network")
            self.register_buffer("w_avg_per_class", torch.zeros(c_dim, w_dim))

    def forward(
        self, z: torch.Tensor | None, c: torch.Tensor | None = None, truncation_psi: float = 1.0
    ) -> torch.Tensor:
        """ws [N, num_ws, w_dim] (generator) or w [N, w_dim]; truncation pulls w towards w_avg."""
        parts = []
        if self.z_dim > 0:
            assert_shape("z", z, [None, self.z_dim])
            parts.append(normalize_2nd_moment(z.to(torch.float32)))
        c = _check_labels(c, self.c_dim, batch=z.shape[0] if z is not None else None)
        if self.c_dim > 0:
            parts.append(normalize_2nd_moment(self.embed(c.to(torch.float32))))
        x = torch.cat(parts, dim=1)  # [N, z_dim + embed]
        for index in range(self.num_layers):
            x = getattr(self, f"fc{index}")(x)  # [N, w_dim]
        if self.num_ws is None:
            return x
        if truncation_psi != 1:  # towards the class's own centre where there is one (a blend for soft labels)
            centre = c.to(torch.float32) @ self.w_avg_per_class if hasattr(self, "w_avg_per_class") else self.w_avg
            x = centre + truncation_psi * (x - centre)
        return x.unsqueeze(1).repeat(1, self.num_ws, 1)  # [N, num_ws, w_dim]


def _check_labels(c: torch.Tensor | None, c_dim: int, batch: int | None) -> torch.Tensor | None:
    """Class labels [N, c_dim] for a conditional network (required), None or [N, 0] otherwise."""
    if c_dim == 0:
        if c is not None and c.numel() > 0:
            raise ValueError(f"this network is unconditional (c_dim 0) but got labels c of shape {list(c.shape)}")
        return None
    if c is None:
        raise ValueError(f"this network is class-conditional: pass labels c of shape [batch, {c_dim}] (one-hot)")
    assert_shape("c", c, [batch, c_dim])
    return c


# ---------------------------------------------------------------------------------------------------
# Generator


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally 2x upsampling), noise, bias, leaky ReLU, clamp."""

    def __init__(
        self,
        in_channels: int,  # input feature channels
        out_channels: int,  # output feature channels
        w_dim: int,  # width of the w that drives the style affine
        resolution: int,  # output resolution (size of the noise input)
        up: bool,  # upsample 2x (transposed conv + FIR filter)
        conv_clamp: float | None,  # clamp the activations to +-conv_clamp, None = no clamp
        resample_filter: list[float],  # 1-D FIR taps for the upsampling
    ):
        super().__init__()
        self.in_channels, self.resolution, self.up, self.conv_clamp = in_channels, resolution, up, conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        if up:
            self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str) -> torch.Tensor:
        in_resolution = self.resolution // 2 if self.up else self.resolution
        assert_shape("SynthesisLayer input", x, [None, self.in_channels, in_resolution, in_resolution])
        styles = self.affine(w)  # [N, I]
        x = modulated_conv2d(
            x, self.weight, styles, demodulate=True, upsample_filter=self.resample_filter if self.up else None,
            fused=not self.training,
        )  # [N, O, res, res]; training: the unfused form, as StyleGAN2 trains (cheaper backward)
        if noise_mode == "const":
            x = x + self.noise_const * self.noise_strength
        elif noise_mode == "random":
            x = x + torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device) * self.noise_strength
        return bias_act(x, self.bias, lrelu=True, gain=LRELU_GAIN, clamp=self.conv_clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv to image channels, without demodulation."""

    def __init__(
        self,
        in_channels: int,  # input feature channels
        img_channels: int,  # output image channels
        w_dim: int,  # width of the w that drives the style affine
        conv_clamp: float | None,  # clamp the output to +-conv_clamp, None = no clamp
    ):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(img_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain  # [N, I]
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=not self.training)  # [N, C, H, W]
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: (const | upsampling conv0), conv1, torgb added to the image."""

    def __init__(
        self,
        in_channels: int,  # channels from the previous block, 0 for the 4x4 block (learned const input)
        out_channels: int,  # channels of this block
        w_dim: int,  # width of w
        resolution: int,  # this block's resolution
        img_channels: int,  # image channels
        conv_clamp: float | None,  # activation clamp, None = no clamp
        resample_filter: list[float],  # 1-D FIR taps for upsampling features and image
    ):
        super().__init__()
        self.out_channels, self.resolution = out_channels, resolution
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(
                in_channels,
                out_channels,
                w_dim,
                resolution,
                up=True,
                conv_clamp=conv_clamp,
                resample_filter=resample_filter,
            )
        self.conv1 = SynthesisLayer(
            out_channels,
            out_channels,
            w_dim,
            resolution,
            up=False,
            conv_clamp=conv_clamp,
            resample_filter=resample_filter,
        )
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=False)

    def forward(
        self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor, noise_mode: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ws: [N, num_conv + 1, w_dim] (the last one drives torgb). Returns features and image at `resolution`."""
        if x is None:
            x = self.const.unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)  # [N, C, 4, 4]
        else:
            x = self.conv0(x, ws[:, 0], noise_mode)  # [N, C, res, res]
        x = self.conv1(x, ws[:, self.num_conv - 1], noise_mode)
        rgb = self.torgb(x, ws[:, self.num_conv])  # [N, img_channels, res, res]
        img = rgb if img is None else upsample2d(img, self.resample_filter) + rgb
        return x, img


class SynthesisNetwork(nn.Module):
    """ws -> image: blocks b4 .. b{img_resolution}, each adding its torgb output to the upsampled image.

    Block b{res} uses ws[i], ws[i+1] for its convolutions and ws[i+1] or ws[i+2] for torgb: each
    block's torgb shares its w with the next block's first conv, so num_ws = 2 log2(res) - 2.
    """

    def __init__(
        self,
        w_dim: int,  # width of w
        img_resolution: int,  # output resolution
        img_channels: int,  # output channels
        channels: list[int],  # feature channels per resolution, from 4 px upwards
        conv_clamp: float | None,  # activation clamp, None = no clamp
        resample_filter: list[float],  # 1-D FIR taps for all resampling
    ):
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = block_resolutions(img_resolution)
        for index, resolution in enumerate(self.block_resolutions):
            in_channels = channels[index - 1] if index > 0 else 0
            block = SynthesisBlock(
                in_channels, channels[index], w_dim, resolution, img_channels, conv_clamp, resample_filter
            )
            self.add_module(f"b{resolution}", block)
        self.num_ws = 2 * len(self.block_resolutions)

    def forward(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """ws [N, num_ws, w_dim] -> img [N, img_channels, img_resolution, img_resolution]."""
        assert_shape("ws", ws, [None, self.num_ws, self.w_dim])
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, got {noise_mode!r}")
        x = img = None
        w_index = 0
        for resolution in self.block_resolutions:
            block = getattr(self, f"b{resolution}")
            x, img = block(x, img, ws[:, w_index : w_index + block.num_conv + 1], noise_mode)
            w_index += block.num_conv
        return img


@register
class StyleGAN2Generator(nn.Module):
    """StyleGAN2 generator (skip architecture): G(z, c) = synthesis(mapping(z, c)).

    `G.mapping(z, c, truncation_psi)` gives ws [N, num_ws, w_dim]; `G.synthesis(ws, noise_mode)` gives
    images [N, img_channels, H, W]. Style mixing is mixing rows of ws. `noise_mode`: "const" (the
    stored noise_const buffers, what both references use for reproducible outputs), "random" (fresh
    Gaussian noise), "none".
    """

    arch = "stylegan2-generator"

    @dataclass
    class Config:
        z_dim: int  # input latent (Z) width
        w_dim: int  # intermediate latent (W) width
        c_dim: int  # class label width, 0 = unconditional
        img_resolution: int  # output resolution, a power of two
        img_channels: int  # output channels
        channels: list[int]  # feature channels per resolution, from 4 px upwards (channels[i] at 4 * 2**i)
        mapping_layers: int  # depth of the mapping MLP
        mapping_lr_multiplier: float = 0.01  # learning-rate multiplier of the mapping MLP
        conv_clamp: float | None = None  # activation clamp (NVIDIA: 256), None = none (rosinality)
        resample_filter: list[float] = field(default_factory=lambda: [1.0, 3.0, 3.0, 1.0])  # 1-D FIR taps
        class_w_avg: bool = False  # one truncation centre per class (mapping.w_avg_per_class), conditional only

        def __post_init__(self):
            problem = _shared_problem(self) or _mapping_layers_problem(self.mapping_layers, 1)
            for name in ("z_dim", "w_dim"):
                if problem is None and not _positive_int(getattr(self, name)):
                    problem = f"{name} must be a positive integer, got {getattr(self, name)!r}"
            if problem is None and self.class_w_avg and self.c_dim == 0:
                problem = "class_w_avg needs a conditional generator (c_dim > 0)"
            if problem:
                raise ValueError(problem)

    @staticmethod
    def least_elements(config: Config) -> int:
        """A lower bound of the elements of the module's tensors (mapping and convolution weights, styles,
        noise), from the config alone: what building it allocates at least (ganedit.generators.registry)."""
        w, widths = config.w_dim, config.channels
        total = (config.z_dim + config.c_dim + (w if config.c_dim else 0)) * w + (config.mapping_layers - 1) * w * w
        for index, resolution in enumerate(block_resolutions(config.img_resolution)):
            out, into = widths[index], widths[index - 1] if index else 0
            total += 9 * out * (into + out) + (into + 2 * out) * w + 2 * resolution * resolution
        return total

    def __init__(self, config: Config):
        super().__init__()
        self.config = config
        self.z_dim, self.w_dim, self.c_dim = config.z_dim, config.w_dim, config.c_dim
        self.img_resolution, self.img_channels = config.img_resolution, config.img_channels
        self.synthesis = SynthesisNetwork(
            config.w_dim,
            config.img_resolution,
            config.img_channels,
            list(config.channels),
            config.conv_clamp,
            list(config.resample_filter),
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            config.z_dim,
            config.c_dim,
            config.w_dim,
            config.mapping_layers,
            config.mapping_lr_multiplier,
            num_ws=self.num_ws,
            class_w_avg=config.class_w_avg,
        )

    def forward(
        self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0, noise_mode: str = "const"
    ) -> torch.Tensor:
        """z [N, z_dim], c [N, c_dim] or None -> img [N, img_channels, img_resolution, img_resolution]."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi)
        return self.synthesis(ws, noise_mode=noise_mode)


# ---------------------------------------------------------------------------------------------------
# Discriminator


class Conv2dLayer(nn.Module):
    """Conv with equalised learning rate, optionally 2x downsampling (FIR filter, then stride-2 conv),
    then bias, activation, clamp."""

    def __init__(
        self,
        in_channels: int,  # input channels
        out_channels: int,  # output channels
        kernel_size: int,  # square kernel size
        bias: bool = True,  # add a learned bias
        lrelu: bool = True,  # leaky ReLU * sqrt(2), else linear
        down: bool = False,  # downsample 2x
        conv_clamp: float | None = None,  # output clamp, None = none
        resample_filter: list[float] | None = None,  # 1-D FIR taps, required when `down`
    ):
        super().__init__()
        self.in_channels, self.lrelu, self.down, self.conv_clamp = in_channels, lrelu, down, conv_clamp
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        if down:
            self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=False)
            total_padding = (len(resample_filter) - 2) + (kernel_size - 1)
            self.filter_padding = ((total_padding + 1) // 2, total_padding // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert_shape("Conv2dLayer input", x, [None, self.in_channels, None, None])
        weight = self.weight * self.weight_gain
        if self.down:
            x = upfirdn2d(x, self.resample_filter, padding=self.filter_padding)
            x = F.conv2d(x, weight.to(x.dtype), stride=2)  # [N, O, H/2, W/2]
        else:
            x = F.conv2d(x, weight.to(x.dtype), padding=weight.shape[-1] // 2)  # [N, O, H, W]
        return bias_act(x, self.bias, lrelu=self.lrelu, gain=LRELU_GAIN if self.lrelu else 1.0, clamp=self.conv_clamp)


class DiscriminatorBlock(nn.Module):
    """Residual block: (fromrgb), conv0, downsampling conv1, plus a downsampling 1x1 skip, scaled by sqrt(1/2)."""

    def __init__(
        self,
        in_channels: int,  # channels from the previous block, 0 for the first block (reads the image)
        tmp_channels: int,  # channels at this block's resolution
        out_channels: int,  # channels after downsampling
        img_channels: int,  # image channels
        conv_clamp: float | None,  # activation clamp, None = none
        resample_filter: list[float],  # 1-D FIR taps for the downsampling
    ):
        super().__init__()
        self.in_channels, self.tmp_channels = in_channels, tmp_channels
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(
            tmp_channels, out_channels, kernel_size=3, down=True, conv_clamp=conv_clamp, resample_filter=resample_filter
        )
        self.skip = Conv2dLayer(
            tmp_channels,
            out_channels,
            kernel_size=1,
            bias=False,
            lrelu=False,
            down=True,
            resample_filter=resample_filter,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, in_channels or img_channels, H, W] -> [N, out_channels, H/2, W/2]."""
        if self.in_channels == 0:
            x = self.fromrgb(x)  # [N, tmp, H, W]
        skip = self.skip(x)
        x = self.conv1(self.conv0(x))
        return (x + skip) * math.sqrt(0.5)


class MinibatchStdLayer(nn.Module):
    """Append the mean standard deviation over groups of samples as extra feature channels."""

    def __init__(
        self,
        group_size: int,  # samples per group (min(group_size, batch) is used)
        num_channels: int,  # number of channel groups, one appended feature map each
    ):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        group = min(self.group_size, batch)
        if batch % group:
            raise ValueError(
                f"the discriminator's batch size ({batch}) must be a multiple of {group} (minibatch stddev)"
            )
        features = self.num_channels
        y = x.reshape(group, -1, features, channels // features, height, width)  # [GnFcHW]
        y = y - y.mean(dim=0)  # deviations within each group
        y = (y.square().mean(dim=0) + 1e-8).sqrt()  # [nFcHW] stddev over the group
        y = y.mean(dim=[2, 3, 4])  # [nF] averaged over channels and pixels
        y = y.reshape(-1, features, 1, 1).repeat(group, 1, height, width)  # [NFHW]
        return torch.cat([x, y], dim=1)  # [N, C + F, H, W]


class DiscriminatorEpilogue(nn.Module):
    """At 4x4: minibatch stddev, conv, fc, out; projected onto the class map when conditional."""

    def __init__(
        self,
        in_channels: int,  # channels at 4x4
        cmap_dim: int,  # width of the class projection, 0 = unconditional (one logit)
        mbstd_group_size: int,  # minibatch stddev group size
        mbstd_num_channels: int,  # minibatch stddev feature maps, 0 = no minibatch stddev
        conv_clamp: float | None,  # activation clamp, None = none
    ):
        super().__init__()
        self.in_channels, self.cmap_dim = in_channels, cmap_dim
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3, conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * 4 * 4, in_channels, lrelu=True)
        self.out = FullyConnectedLayer(in_channels, cmap_dim if cmap_dim > 0 else 1)

    def forward(self, x: torch.Tensor, cmap: torch.Tensor | None) -> torch.Tensor:
        assert_shape("DiscriminatorEpilogue input", x, [None, self.in_channels, 4, 4])
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)  # [N, C, 4, 4]
        x = self.fc(x.flatten(1))  # [N, C]
        x = self.out(x)  # [N, cmap_dim or 1]
        if self.cmap_dim > 0:
            x = (x * cmap).sum(dim=1, keepdim=True) / math.sqrt(self.cmap_dim)  # [N, 1]
        return x


@register
class StyleGAN2Discriminator(nn.Module):
    """StyleGAN2 discriminator (resnet architecture): D(img, c) -> logits [N, 1]."""

    arch = "stylegan2-discriminator"

    @dataclass
    class Config:
        c_dim: int  # class label width, 0 = unconditional
        img_resolution: int  # input resolution, a power of two
        img_channels: int  # input channels
        channels: list[int]  # feature channels per resolution, from 4 px upwards (channels[i] at 4 * 2**i)
        cmap_dim: int = 0  # class projection width (conditional only), 0 = unconditional
        mapping_layers: int = 0  # depth of the class projection MLP (conditional only)
        mapping_lr_multiplier: float = 0.01  # learning-rate multiplier of that MLP
        mbstd_group_size: int = 4  # minibatch stddev group size
        mbstd_num_channels: int = 1  # minibatch stddev feature maps
        conv_clamp: float | None = None  # activation clamp (NVIDIA: 256), None = none (rosinality)
        resample_filter: list[float] = field(default_factory=lambda: [1.0, 3.0, 3.0, 1.0])  # 1-D FIR taps

        def __post_init__(self):
            problem = _shared_problem(self) or _mapping_layers_problem(self.mapping_layers, 0)
            if problem is None and (isinstance(self.cmap_dim, bool) or not isinstance(self.cmap_dim, int)):
                problem = f"cmap_dim must be an integer >= 0, got {self.cmap_dim!r}"
            if problem is None and (self.c_dim > 0) != (self.cmap_dim > 0 and self.mapping_layers > 0):
                problem = (
                    "a conditional discriminator (c_dim > 0) needs cmap_dim > 0 and mapping_layers > 0, and an "
                    f"unconditional one neither; got c_dim {self.c_dim}, cmap_dim {self.cmap_dim}, "
                    f"mapping_layers {self.mapping_layers}"
                )
            if problem is None and not _positive_int(self.mbstd_group_size):
                problem = f"mbstd_group_size must be a positive integer, got {self.mbstd_group_size!r}"
            features = self.mbstd_num_channels
            if problem is None and (
                isinstance(features, bool)
                or not isinstance(features, int)
                or features < 0
                or (features > 0 and self.channels[0] % features)
            ):
                problem = f"mbstd_num_channels must be 0 or divide the 4 px width {self.channels[0]}, got {features!r}"
            if problem:
                raise ValueError(problem)

    @staticmethod
    def least_elements(config: Config) -> int:
        """A lower bound of the elements of the module's tensors (convolution and epilogue weights, class
        projection), from the config alone: what building it allocates at least (ganedit.generators.registry)."""
        widths, cmap = config.channels, config.cmap_dim
        total = 9 * (widths[0] + config.mbstd_num_channels) * widths[0] + 16 * widths[0] * widths[0]
        total += widths[0] * max(cmap, 1) + (config.c_dim * cmap + config.mapping_layers * cmap * cmap)
        for index in range(1, len(widths)):
            total += widths[index] * (9 * widths[index] + 10 * widths[index - 1])  # conv0, conv1, skip
        return total + config.img_channels * widths[-1]

    def __init__(self, config: Config):
        super().__init__()
        self.config = config
        self.c_dim, self.img_resolution, self.img_channels = config.c_dim, config.img_resolution, config.img_channels
        resolutions = block_resolutions(config.img_resolution)
        self.block_resolutions = resolutions[:0:-1]  # img_resolution .. 8
        for resolution in self.block_resolutions:
            index = resolutions.index(resolution)
            in_channels = config.channels[index] if resolution < config.img_resolution else 0
            block = DiscriminatorBlock(
                in_channels,
                config.channels[index],
                config.channels[index - 1],
                config.img_channels,
                config.conv_clamp,
                list(config.resample_filter),
            )
            self.add_module(f"b{resolution}", block)
        if config.c_dim > 0:
            self.mapping = MappingNetwork(
                0, config.c_dim, config.cmap_dim, config.mapping_layers, config.mapping_lr_multiplier, num_ws=None
            )
        self.b4 = DiscriminatorEpilogue(
            config.channels[0], config.cmap_dim, config.mbstd_group_size, config.mbstd_num_channels, config.conv_clamp
        )

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """img [N, img_channels, R, R], c [N, c_dim] (conditional) -> logits [N, 1]."""
        assert_shape("img", img, [None, self.img_channels, self.img_resolution, self.img_resolution])
        c = _check_labels(c, self.c_dim, img.shape[0])
        x = img.to(torch.float32)
        for resolution in self.block_resolutions:
            x = getattr(self, f"b{resolution}")(x)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None  # [N, cmap_dim]
        return self.b4(x, cmap)
