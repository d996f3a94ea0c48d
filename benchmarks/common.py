"""What every benchmark shares: the device's name and peak, synchronised timing, peak memory."""

import platform
import statistics
import time

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


def timed(step, device) -> float:
    synchronize(device)
    start = time.perf_counter()
    step()
    synchronize(device)
    return time.perf_counter() - start


def time_interleaved(steps: dict, repeats: int, device) -> dict:
    """Median seconds per step of each named step, run in turn (one warm-up round first).

    Odd rounds run the steps in reverse order (A B, B A, A B, ...), so that neither side always runs
    right after the other: drift of a shared machine falls on both alike.
    """
    times = {name: [] for name in steps}
    for round_index in range(repeats + 1):
        order = list(steps) if round_index % 2 == 0 else list(reversed(steps))
        for name in order:
            seconds = timed(steps[name], device)
            if round_index > 0:
                times[name].append(seconds)
    return {name: statistics.median(values) for name, values in times.items()}
