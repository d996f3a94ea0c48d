"""What every benchmark shares: the device's name and peak, synchronised timing, peak memory."""

import platform

import torch

# Dense bf16 tensor-core peaks from NVIDIA's data sheets, TFLOP/s, by a part of the device name.
PEAK_BF16_TFLOPS = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def device_description(device: torch.device) -> tuple[str, float | None]:
    """The device's name and its dense bf16 peak in TFLOP/s where known."""
    if device.type != "cuda":
        return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads", None
    name = torch.cuda.get_device_name(device)
    peak = next((tflops for part, tflops in PEAK_BF16_TFLOPS if part in name), None)
    return name, peak
