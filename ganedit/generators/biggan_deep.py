"""BigGAN-deep generator, compatible with the checkpoints of `pytorch-pretrained-biggan`.

The DeepMind TF-Hub BigGAN-deep models, as converted by Hugging Face's `pytorch-pretrained-biggan`
package: the state_dict keys and shapes are the package's, so its `pytorch_model.bin` loads strictly,
and `BigGANDeep(config)(z * t, onehot, t)` computes what the package's `model(z * t, onehot, t)` does.

Two things differ from a textbook BigGAN generator and matter when editing one:
- spectral normalisation uses the stored `weight_u` / `weight_v` as they are (no power iteration, in
  train() or eval() mode), so fine-tuning never changes them behind the caller's back;
- batch norm never uses batch statistics: each one stores per-truncation statistics ([n_stats, C]) and
  the truncation passed to `forward` selects them (see `statistics_at`).

Built bottom-up: `SNLinear`, `SNConv2d` -> `ConditionalBatchNorm`, `BatchNorm` -> `GenBlock`,
`SelfAttention` -> `Generator` -> `BigGANDeep`.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ganedit.errors import CheckpointFormatError
from ganedit.generators.ops import assert_shape
from ganedit.generators.registry import register


def spectral_normalized(weight_orig: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """`weight_orig / sigma`, with sigma = u . (W v) estimated from the stored singular vectors.

    This is what `torch.nn.utils.spectral_norm` computes in eval mode. u and v are constants: gradients
    flow through W in both the numerator and sigma, as in PyTorch.
    """
    weight_mat = weight_orig.flatten(1)  # [out, in * k * k]
    sigma = torch.dot(u, torch.mv(weight_mat, v))
    return weight_orig / sigma


class SpectralNormParameters(nn.Module):
    """The `weight_orig` / `weight_u` / `weight_v` layout of PyTorch's spectral_norm hook.

    Args:
        weight_shape: shape of the weight, output dimension first.
        bias:         whether the layer has a bias.
    """

    def __init__(self, weight_shape: tuple[int, ...], bias: bool):
        super().__init__()
        out_features = weight_shape[0]
        fan_in = math.prod(weight_shape[1:])
        # Same registration order as nn.Linear / nn.Conv2d after spectral_norm, so state_dict() keys come
        # out in the package's order: bias, weight_orig, weight_u, weight_v.
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.weight_orig = nn.Parameter(torch.empty(weight_shape))
        self.register_buffer("weight_u", torch.empty(out_features))
        self.register_buffer("weight_v", torch.empty(fan_in))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Random weights with u, v from one power-iteration step, so that sigma is a sensible estimate.

        Only a module built from scratch needs this: a loaded checkpoint overwrites all of it.
        """
        nn.init.kaiming_uniform_(self.weight_orig, a=math.sqrt(5))
        weight_mat = self.weight_orig.flatten(1)
        u = F.normalize(torch.randn(weight_mat.shape[0]), dim=0)
        self.weight_v.copy_(F.normalize(torch.mv(weight_mat.t(), u), dim=0))
        self.weight_u.copy_(F.normalize(torch.mv(weight_mat, self.weight_v), dim=0))

    @property
    def weight(self) -> torch.Tensor:
        """The effective (spectrally normalised) weight."""
        return spectral_normalized(self.weight_orig, self.weight_u, self.weight_v)


class SNLinear(SpectralNormParameters):
    """Spectrally normalised linear layer.

    Args:
        in_features:  input dimension.
        out_features: output dimension.
        bias:         whether to add a learned bias.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__((out_features, in_features), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class SNConv2d(SpectralNormParameters):
    """Spectrally normalised 2-D convolution, stride 1, 'same' padding.

    Args:
        in_channels:  input channels.
        out_channels: output channels.
        kernel_size:  1 or 3 in BigGAN-deep.
        bias:         whether to add a learned bias.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True):
        super().__init__((out_channels, in_channels, kernel_size, kernel_size), bias)
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, padding=self.padding)


def statistics_at(stats: torch.Tensor, truncation: float) -> torch.Tensor:
    """The batch-norm statistics [C] stored for `truncation`, from a table [n_stats, C].

    Row j holds the statistics for truncation j / (n_stats - 1). On that grid the row is used as is.
    Off the grid this reproduces `pytorch-pretrained-biggan` bit for bit, quirks included:
    - with `coef, j = math.modf(truncation / step)` the result is `row[j] * coef + row[j+1] * (1 - coef)`:
      the weights are swapped relative to linear interpolation, so 0.405 gives the statistics that
      linear interpolation would give for 0.415;
    - `truncation / step` is not exact in floating point, so some grid values (0.14, 0.28, 0.56, 0.58,
      0.94 with n_stats 51) land a hair above their row and select the next row almost entirely.
    Published BigGAN-deep outputs at those truncations were computed this way, hence the fidelity.
    """
    step = 1.0 / (stats.shape[0] - 1)
    coef, row = math.modf(truncation / step)
    row = int(row)
    if coef == 0.0:
        return stats[row]
    return stats[row] * coef + stats[row + 1] * (1 - coef)


class ConditionalBatchNorm(nn.Module):
    """Batch norm with stored per-truncation statistics and a class/latent-conditional gain and bias.

    out = (x - mean_t) / sqrt(var_t + eps) * (1 + scale(cond)) + offset(cond)

    Args:
        num_features:  channels C of the input.
        cond_dim:      dimension of the condition vector (z and class embedding concatenated).
        n_stats:       number of truncation values with stored statistics.
        eps:           added to the variance.
    """

    def __init__(self, num_features: int, cond_dim: int, n_stats: int, eps: float):
        super().__init__()
        self.eps = eps
        self.register_buffer("running_means", torch.zeros(n_stats, num_features))
        self.register_buffer("running_vars", torch.ones(n_stats, num_features))
        self.scale = SNLinear(cond_dim, num_features, bias=False)
        self.offset = SNLinear(cond_dim, num_features, bias=False)
        self.batch_statistics = False

    def forward(self, x: torch.Tensor, cond: torch.Tensor, truncation: float) -> torch.Tensor:
        mean, var = _statistics(self, x, truncation)  # [C], [C]
        inv_std = torch.rsqrt(var + self.eps)  # [C]
        # Fold normalisation and conditional affine into one per-sample, per-channel x * a + b.
        a = (1 + self.scale(cond)) * inv_std  # [B, C]
        b = self.offset(cond) - mean * a  # [B, C]
        return torch.addcmul(b[:, :, None, None], x, a[:, :, None, None])  # [B, C, H, W]


class BatchNorm(nn.Module):
    """Batch norm with stored per-truncation statistics and a learned (unconditional) affine.

    Args:
        num_features: channels C of the input.
        n_stats:      number of truncation values with stored statistics.
        eps:          added to the variance.
    """

    def __init__(self, num_features: int, n_stats: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_means", torch.zeros(n_stats, num_features))
        self.register_buffer("running_vars", torch.ones(n_stats, num_features))
        self.batch_statistics = False

    def forward(self, x: torch.Tensor, truncation: float) -> torch.Tensor:
        if self.batch_statistics:
            return F.batch_norm(x, None, None, self.weight, self.bias, training=True, eps=self.eps)
        mean, var = _statistics(self, x, truncation)
        return F.batch_norm(x, mean, var, self.weight, self.bias, training=False, eps=self.eps)


def _statistics(norm: nn.Module, x: torch.Tensor, truncation: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance [C] a batch norm normalises with: stored for `truncation`, or the batch's own.

    The batch's own statistics are used only while training from scratch (`use_batch_statistics`).
    """
    if norm.batch_statistics:
        return x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)
    return statistics_at(norm.running_means, truncation), statistics_at(norm.running_vars, truncation)


class GenBlock(nn.Module):
    """BigGAN-deep residual block: four (BN, ReLU, conv) with a 4x channel bottleneck.

    The skip path keeps the first `out_channels` channels and is upsampled like the main path.

    Args:
        in_channels:  input channels.
        out_channels: output channels: in_channels or in_channels // 2.
        cond_dim:     dimension of the condition vector fed to every batch norm.
        upsample:     whether the block doubles the resolution (nearest neighbour).
        n_stats:      number of stored batch-norm statistics per layer.
        eps:          batch-norm epsilon.
    """

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int, upsample: bool, n_stats: int, eps: float):
        super().__init__()
        self.out_channels = out_channels
        self.upsample = upsample
        middle = in_channels // 4

        self.bn_0 = ConditionalBatchNorm(in_channels, cond_dim, n_stats, eps)
        self.conv_0 = SNConv2d(in_channels, middle, kernel_size=1)
        self.bn_1 = ConditionalBatchNorm(middle, cond_dim, n_stats, eps)
        self.conv_1 = SNConv2d(middle, middle, kernel_size=3)
        self.bn_2 = ConditionalBatchNorm(middle, cond_dim, n_stats, eps)
        self.conv_2 = SNConv2d(middle, middle, kernel_size=3)
        self.bn_3 = ConditionalBatchNorm(middle, cond_dim, n_stats, eps)
        self.conv_3 = SNConv2d(middle, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, truncation: float) -> torch.Tensor:
        # x: [B, in, H, W] -> [B, out, H', W'] with H' = 2H if upsample else H
        h = self.conv_0(F.relu(self.bn_0(x, cond, truncation), inplace=True))  # [B, in/4, H, W]
        h = F.relu(self.bn_1(h, cond, truncation), inplace=True)
        if self.upsample:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = self.conv_1(h)  # [B, in/4, H', W']
        h = self.conv_2(F.relu(self.bn_2(h, cond, truncation), inplace=True))
        h = self.conv_3(F.relu(self.bn_3(h, cond, truncation), inplace=True))  # [B, out, H', W']

        skip = x[:, : self.out_channels]
        if self.upsample:
            skip = F.interpolate(skip, scale_factor=2, mode="nearest")
        return h + skip


class SelfAttention(nn.Module):
    """SAGAN self-attention: keys and values max-pooled 2x2, softmax over keys without scaling.

    Args:
        channels: input channels C (theta and phi project to C/8, g to C/2).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.snconv1x1_theta = SNConv2d(channels, channels // 8, kernel_size=1, bias=False)
        self.snconv1x1_phi = SNConv2d(channels, channels // 8, kernel_size=1, bias=False)
        self.snconv1x1_g = SNConv2d(channels, channels // 2, kernel_size=1, bias=False)
        self.snconv1x1_o_conv = SNConv2d(channels // 2, channels, kernel_size=1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        query = self.snconv1x1_theta(x).flatten(2).transpose(1, 2)  # [B, HW, C/8]
        key = F.max_pool2d(self.snconv1x1_phi(x), 2).flatten(2).transpose(1, 2)  # [B, HW/4, C/8]
        value = F.max_pool2d(self.snconv1x1_g(x), 2).flatten(2).transpose(1, 2)  # [B, HW/4, C/2]
        attended = F.scaled_dot_product_attention(query, key, value, scale=1.0)  # [B, HW, C/2]
        attended = attended.transpose(1, 2).reshape(batch, channels // 2, height, width)
        return x + self.gamma * self.snconv1x1_o_conv(attended)


class Generator(nn.Module):
    """The BigGAN-deep generator proper: condition vector (z, class embedding) -> image.

    Args:
        config: a `BigGANDeep.Config`.
    """

    def __init__(self, config: "BigGANDeep.Config"):
        super().__init__()
        ch = config.channel_width
        cond_dim = 2 * config.z_dim
        self.first_channels = ch * config.layers[0][1]

        self.gen_z = SNLinear(cond_dim, 4 * 4 * self.first_channels)
        layers = []
        for index, (upsample, in_mult, out_mult) in enumerate(config.layers):
            if index == config.attention_layer_position:
                layers.append(SelfAttention(ch * in_mult))
            layers.append(GenBlock(ch * in_mult, ch * out_mult, cond_dim, upsample, config.n_stats, config.eps))
        self.layers = nn.ModuleList(layers)
        self.bn = BatchNorm(ch, config.n_stats, config.eps)
        self.conv_to_rgb = SNConv2d(ch, ch, kernel_size=3)

    def forward(self, cond: torch.Tensor, truncation: float) -> torch.Tensor:
        # cond: [B, 2 * z_dim]
        x = self.gen_z(cond)  # [B, 4 * 4 * C0]
        # The TF-Hub weights lay the 4x4 map out as [B, H, W, C].
        x = x.view(-1, 4, 4, self.first_channels).permute(0, 3, 1, 2).contiguous()  # [B, C0, 4, 4]
        for layer in self.layers:
            x = layer(x, cond, truncation) if isinstance(layer, GenBlock) else layer(x)
        x = F.relu(self.bn(x, truncation), inplace=True)  # [B, ch, H, W]
        # The layer has channel_width outputs of which only the first 3 are used: compute only those.
        rgb = F.conv2d(x, self.conv_to_rgb.weight[:3], self.conv_to_rgb.bias[:3], padding=1)
        return torch.tanh(rgb)  # [B, 3, H, W]


MAX_LAYERS = 64  # the most blocks a config may ask for (published models: 12 to 16)


def _validate_config(config: "BigGANDeep.Config") -> str | None:
    """What is wrong with a config, or None."""
    for name in ("z_dim", "class_embed_dim", "channel_width", "num_classes", "n_stats", "output_dim"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return f"{name} must be a positive integer, got {value!r}"
    if config.n_stats < 2:
        return f"n_stats must be at least 2, got {config.n_stats}"
    if isinstance(config.eps, bool) or not isinstance(config.eps, (int, float)) or not 0 < config.eps < math.inf:
        return f"eps must be a positive number, got {config.eps!r}"
    if not isinstance(config.layers, (list, tuple)) or not 1 <= len(config.layers) <= MAX_LAYERS:
        shown = repr(config.layers)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return f"layers must be a list of 1 to {MAX_LAYERS} [upsample, in_mult, out_mult], got {shown}"
    for index, layer in enumerate(config.layers):
        if (
            not isinstance(layer, (list, tuple))
            or len(layer) != 3
            or not isinstance(layer[0], bool)
            or any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in layer[1:])
        ):
            return f"layers[{index}] must be [upsample: bool, in_mult: int, out_mult: int], got {layer!r}"
        _, in_mult, out_mult = layer
        if out_mult not in (in_mult, in_mult / 2):
            return f"layers[{index}] = {layer!r}: out_mult must equal in_mult or in_mult / 2"
        if index > 0 and in_mult != config.layers[index - 1][2]:
            previous = config.layers[index - 1][2]
            return f"layers[{index}] takes {in_mult} x channel_width channels but layers[{index - 1}] gives {previous}"
    if config.layers[-1][2] != 1:
        return f"the last layer must output 1 x channel_width channels, got {config.layers[-1][2]}"
    position = config.attention_layer_position
    if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position < len(config.layers):
        return f"attention_layer_position must be an integer in [0, {len(config.layers)}), got {position!r}"
    return None


@register
class BigGANDeep(nn.Module):
    """BigGAN-deep, a drop-in for `pytorch_pretrained_biggan.BigGAN` with the same state_dict.

    `G(z, c, truncation)`: z [B, z_dim] already multiplied by the truncation (as the package expects,
    `G(z * t, onehot, t)`), c a one-hot or soft class vector [B, num_classes] or class indices [B],
    0 < truncation <= 1. Returns images in [-1, 1], [B, 3, H, W].

    The class embedding of class k is column k of `embeddings.weight` ([z_dim, num_classes]);
    `class_embeddings` gives them as rows. `from_embedding` generates from raw embeddings, the path an
    embedding optimiser uses.
    """

    arch = "biggan-deep"

    @dataclass
    class Config:
        """Every field of the package's config.json, with its meaning."""

        output_dim: int  # image resolution; informational, the layers decide the real one
        z_dim: int  # latent dimension, also the class-embedding dimension
        class_embed_dim: int  # unused by the architecture, kept for round-tripping config.json
        channel_width: int  # channels = channel_width * mult
        num_classes: int
        layers: list  # [[upsample: bool, in_mult: int, out_mult: int], ...], starting at 4x4
        attention_layer_position: int  # self-attention inserted before this block
        eps: float  # batch-norm epsilon
        n_stats: int  # stored batch-norm statistics per layer, for truncations j / (n_stats - 1)

        def __post_init__(self):
            problem = _validate_config(self)
            if problem:
                raise CheckpointFormatError(f"invalid BigGAN-deep config: {problem}")
            # Lists, not tuples, so that the config survives a round trip through JSON unchanged.
            self.layers = [[bool(up), int(i), int(o)] for up, i, o in self.layers]
            self.eps = float(self.eps)

        @classmethod
        def from_json_dict(cls, raw: object, source: str = "config.json") -> "BigGANDeep.Config":
            """Validate a parsed config.json (extra keys are ignored); `source` names it in errors."""
            fields = list(cls.__dataclass_fields__)
            if not isinstance(raw, dict):
                raise CheckpointFormatError(
                    f"{source}: expected a JSON object with keys {', '.join(fields)}, got {type(raw).__name__}; "
                    "use the config.json published with the model"
                )
            missing = [name for name in fields if name not in raw]
            if missing:
                raise CheckpointFormatError(
                    f"{source}: BigGAN-deep config lacks {', '.join(missing)}; "
                    "use the config.json published with the model"
                )
            try:
                return cls(**{name: raw[name] for name in fields})
            except CheckpointFormatError as error:
                raise CheckpointFormatError(
                    f"{source}: {error}; use the config.json published with the model"
                ) from None

    @staticmethod
    def least_elements(config: Config) -> int:
        """A lower bound of the elements of the module's tensors (embeddings, convolution and batch-norm
        weights and statistics), from the config alone: what building it allocates at least
        (ganedit.generators.registry)."""
        width, condition, stats = config.channel_width, 2 * config.z_dim, 2 * config.n_stats
        total = config.num_classes * config.z_dim + condition * 16 * width * config.layers[0][1]
        for _, in_mult, out_mult in config.layers:
            into, middle, out = width * in_mult, width * in_mult // 4, width * out_mult
            total += into * middle + 18 * middle * middle + middle * out  # conv_0 .. conv_3
            total += (into + 3 * middle) * (stats + 2 * condition)  # bn_0 .. bn_3
        return total + width * (stats + 9 * width)  # bn, conv_to_rgb

    def __init__(self, config: Config):
        super().__init__()
        self.config = config
        # nn.Linear stores [out, in]: embeddings.weight is [z_dim, num_classes].
        self.embeddings = nn.Linear(config.num_classes, config.z_dim, bias=False)
        self.generator = Generator(config)

    @property
    def class_embeddings(self) -> torch.Tensor:
        """The class-embedding table [num_classes, z_dim], a view: row k is class k."""
        return self.embeddings.weight.t()

    def embed(self, c: torch.Tensor) -> torch.Tensor:
        """Class embedding [B, z_dim] of one-hot or soft vectors [B, num_classes] or of indices [B]."""
        if c.dim() == 1 and not c.is_floating_point() and c.dtype != torch.bool:
            return F.embedding(c.long(), self.class_embeddings)
        assert_shape("c", c, (None, self.config.num_classes))
        return self.embeddings(c)

    def from_embedding(self, z: torch.Tensor, embedding: torch.Tensor, truncation: float) -> torch.Tensor:
        """Images [B, 3, H, W] from z [B, z_dim] (already scaled by truncation) and embeddings [B, z_dim]."""
        truncation = float(truncation)
        if not 0 < truncation <= 1:
            raise ValueError(f"truncation must be in (0, 1], got {truncation}")
        assert_shape("z", z, (None, self.config.z_dim))
        assert_shape("embedding", embedding, (z.shape[0], self.config.z_dim))
        return self.generator(torch.cat([z, embedding], dim=1), truncation)

    def forward(self, z: torch.Tensor, c: torch.Tensor, truncation: float) -> torch.Tensor:
        """Images [B, 3, H, W] in [-1, 1]; see the class docstring for the arguments."""
        return self.from_embedding(z, self.embed(c), truncation)

    def use_batch_statistics(self, enabled: bool = True) -> "BigGANDeep":
        """Normalise with each batch's own statistics instead of the stored per-truncation ones.

        Only for training a BigGAN-deep from scratch (ganedit's toy-world script), which afterwards
        stores standing statistics per truncation, as BigGAN-deep's were made. Published checkpoints
        and every editing procedure use the stored statistics.
        """
        for module in self.modules():
            if isinstance(module, (ConditionalBatchNorm, BatchNorm)):
                module.batch_statistics = enabled
        return self
