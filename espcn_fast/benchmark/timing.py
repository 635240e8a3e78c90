"""Timing that a reader can trust: warm-up, many repeats, rotated inputs, medians."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


@dataclass
class Timing:
    median_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int

    @property
    def spread_ms(self) -> float:
        return self.p90_ms - self.p10_ms


CUDA_CALLS = 10


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def time_fn(
    fn: Callable[[torch.Tensor], object],
    inputs: Sequence[torch.Tensor],
    device: torch.device,
    warmup: int = 3,
    min_repeats: int = 10,
    budget_s: float = 3.0,
    max_repeats: int = 200,
) -> Timing:
    """Median time of ``fn(x)``; ``x`` cycles through ``inputs`` so that no cache is left warm.

    On CUDA each sample is CUDA events around ``CUDA_CALLS`` back-to-back calls
    on the current stream (divided by that count), so that the device stays
    busy and a fast kernel is not timed as the host's launch latency; on the
    CPU each call is timed with ``perf_counter``. Repeats until ``min_repeats`` and ``budget_s``
    are both reached (or ``max_repeats``).
    """
    for i in range(warmup):
        fn(inputs[i % len(inputs)])
    samples: list[float] = []
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    start_all = time.perf_counter()
    i = 0
    while len(samples) < max_repeats and (len(samples) < min_repeats or time.perf_counter() - start_all < budget_s):
        x = inputs[i % len(inputs)]
        i += 1
        if cuda:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            for j in range(CUDA_CALLS):
                fn(inputs[(i + j) % len(inputs)])
            end.record()
            end.synchronize()
            samples.append(begin.elapsed_time(end) / CUDA_CALLS)
        else:
            t0 = time.perf_counter()
            fn(x)
            samples.append((time.perf_counter() - t0) * 1e3)
    return Timing(statistics.median(samples), _quantile(samples, 0.1), _quantile(samples, 0.9), len(samples))
