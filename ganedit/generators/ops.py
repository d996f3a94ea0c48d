"""Low-level StyleGAN2 operations in plain PyTorch: FIR resampling, bias + activation, modulated conv.

These replace the custom CUDA kernels of both reference implementations (rosinality's `upfirdn2d` /
`fused_lrelu`, NVIDIA's `upfirdn2d` / `bias_act`) with standard operations, so they run on any device
without compiling anything. They compute the same functions as the references' generic code paths.
"""

import math

import torch
import torch.nn.functional as F

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2)  # keeps the activations' second moment through a leaky ReLU


def setup_filter(taps: list[float]) -> torch.Tensor:
    """The separable 2-D FIR filter of 1-D `taps` (e.g. [1, 3, 3, 1]), normalised to sum 1: [k, k]."""
    taps_1d = torch.as_tensor(taps, dtype=torch.float32)
    filter_2d = torch.outer(taps_1d, taps_1d)
    return filter_2d / filter_2d.sum()


def filter_taps(filter_2d: torch.Tensor, gain: float) -> list[float]:
    """The 1-D taps of a stored separable filter (`setup_filter(taps) * gain`), as small integers if they are.

    Row sums of outer(t, t) / sum(t)^2 * gain are t / sum(t) * gain; scaling by the first tap gives
    e.g. [1, 3, 3, 1] back from the buffers rosinality and NVIDIA store.
    """
    normalised = filter_2d.double().sum(dim=1) / gain  # [k]
    relative = normalised / normalised[0]
    if torch.allclose(relative, relative.round(), atol=1e-4):
        relative = relative.round()
    return [float(tap) for tap in relative]


def upfirdn2d(
    x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1, padding: tuple[int, int] = (0, 0), gain: float = 1.0
) -> torch.Tensor:
    """Upsample by zero insertion, pad, convolve with the 2-D FIR filter `f`, keep every `down`-th pixel.

    `padding` = (before, after), the same on both axes. x: [N, C, H, W].
    """
    batch, channels, height, width = x.shape
    if up > 1:
        x = x.reshape(batch, channels, height, 1, width, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(batch, channels, height * up, width * up)
    x = F.pad(x, [padding[0], padding[1], padding[0], padding[1]])
    # A true convolution (flipped filter), depthwise: every channel filtered on its own.
    weight = (f.flip([0, 1]) * gain).to(x.dtype).expand(channels, 1, *f.shape)  # [C, 1, k, k]
    x = F.conv2d(x, weight, groups=channels)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x upsampling with the FIR filter `f` (gain 4 keeps the mean): [N, C, H, W] -> [N, C, 2H, 2W]."""
    taps = f.shape[0]
    return upfirdn2d(x, f, up=2, padding=((taps + 1) // 2, (taps - 2) // 2), gain=4.0)


def bias_act(
    x: torch.Tensor,
    bias: torch.Tensor | None = None,
    lrelu: bool = False,
    gain: float = 1.0,
    clamp: float | None = None,
) -> torch.Tensor:
    """x + bias (over dim 1), then leaky ReLU (slope 0.2) if asked, times `gain`, clamped to [-clamp, clamp].

    The order is NVIDIA's `bias_act`: the clamp applies to the output after the gain.
    """
    if bias is not None:
        x = x + bias.to(x.dtype).reshape(1, -1, *([1] * (x.ndim - 2)))
    if lrelu:
        x = F.leaky_relu(x, LRELU_SLOPE)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale each row of x: [N, D] to unit mean square (rosinality's PixelNorm)."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool,
    upsample_filter: torch.Tensor | None = None,
    fused: bool = True,
) -> torch.Tensor:
    """StyleGAN2's modulated convolution.

    x: [N, I, H, W]; weight: [O, I, k, k]; styles: [N, I] (per-sample input-channel scales).
    With `upsample_filter`: a stride-2 transposed convolution followed by that FIR filter (gain 4),
    giving [N, O, 2H, 2W]; otherwise a same-size convolution, [N, O, H, W].
    Demodulation divides each output channel by the norm of its modulated weights, so any constant
    weight gain cancels and is not applied here.

    fused: one grouped convolution over the batch with per-sample weights (what sampling uses); else the
    activations are scaled by the styles, convolved with the shared weight and scaled by the demodulation
    coefficients, the same function computed as StyleGAN2 trains (NVIDIA's `fused_modconv = not
    training`): its backward is cheaper than the grouped one's (benchmarks/stylegan2_vs_nvidia.py).
    """
    if not fused:
        return _modulated_conv2d_unfused(x, weight, styles, demodulate, upsample_filter)
    batch, in_channels, height, width = x.shape
    out_channels, _, kernel, _ = weight.shape
    w = weight.unsqueeze(0) * styles.reshape(batch, 1, in_channels, 1, 1)  # [NOIkk]
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()  # [NOIkk]
    x = x.reshape(1, batch * in_channels, height, width)
    w = w.to(x.dtype)
    if upsample_filter is None:
        x = F.conv2d(x, w.reshape(batch * out_channels, in_channels, kernel, kernel), padding=kernel // 2, groups=batch)
    else:
        w = w.transpose(1, 2).reshape(batch * in_channels, out_channels, kernel, kernel)  # [(N I) O k k]
        x = F.conv_transpose2d(x, w, stride=2, groups=batch)  # [1, N*O, 2H+k-2, 2W+k-2]
        taps = upsample_filter.shape[0]
        pad = (taps - 2) - (kernel - 1)  # total padding that brings the blurred result to exactly 2H
        x = upfirdn2d(x, upsample_filter, padding=((pad + 1) // 2 + 1, pad // 2 + 1), gain=4.0)
    return x.reshape(batch, out_channels, *x.shape[2:])


def _modulated_conv2d_unfused(x, weight, styles, demodulate, upsample_filter):
    """modulated_conv2d(fused=False): x * s, the shared convolution, then * d with
    d[n, o] = (sum_i,k (weight[o, i, k] s[n, i])^2 + 1e-8)^-1/2 = ((s^2) @ (sum_k weight^2)^T + 1e-8)^-1/2."""
    batch, in_channels = styles.shape
    kernel = weight.shape[-1]
    x = x * styles.to(x.dtype).reshape(batch, in_channels, 1, 1)
    w = weight.to(x.dtype)
    if upsample_filter is None:
        x = F.conv2d(x, w, padding=kernel // 2)
    else:
        x = F.conv_transpose2d(x, w.transpose(0, 1), stride=2)  # [N, O, 2H+k-2, 2W+k-2]
        taps = upsample_filter.shape[0]
        pad = (taps - 2) - (kernel - 1)
        x = upfirdn2d(x, upsample_filter, padding=((pad + 1) // 2 + 1, pad // 2 + 1), gain=4.0)
    if demodulate:
        coefficients = (styles.square() @ weight.square().sum(dim=[2, 3]).T + 1e-8).rsqrt()  # [N, O]
        x = x * coefficients.to(x.dtype).reshape(batch, -1, 1, 1)
    return x


def freeze(module: torch.nn.Module) -> torch.nn.Module:
    """The module in eval mode with no parameter requiring gradients (returned, for chaining)."""
    return module.eval().requires_grad_(False)


def autocast(device_type: str, dtype: str | None) -> torch.autocast:
    """Autocast to `dtype` ("bfloat16", "float16") on `device_type`; dtype None: a context that does nothing."""
    return torch.autocast(device_type, dtype=getattr(torch, dtype or "bfloat16"), enabled=dtype is not None)


def assert_shape(name: str, tensor: torch.Tensor, shape) -> None:
    """Raise ValueError unless `tensor` has `shape` (None matches any size)."""
    if tensor.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(tensor.shape, shape, strict=True)
    ):
        expected = "[" + ", ".join("*" if size is None else str(size) for size in shape) + "]"
        raise ValueError(f"{name} must have shape {expected}, got {list(tensor.shape)}")
