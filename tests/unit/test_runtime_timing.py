"""The one timing loop (``evaluate.runtime.paired_times``): warm-up, samples sized to the module's
speed, interleaved rounds. Real modules; only lower bounds of time are asserted (a sleep lasts at
least its length), so a loaded host cannot make it flaky."""

from __future__ import annotations

import time

import torch
from torch import nn

from quantgate.evaluate.runtime import SAMPLE_SECONDS, forward_latency, paired_times


class Counted(nn.Module):
    """Sleeps ``pause`` seconds per call and counts its calls (and their order, in ``log``)."""

    def __init__(self, name: str, pause: float, log: list[str]) -> None:
        super().__init__()
        self.name, self.pause, self.log, self.calls = name, pause, log, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.log.append(self.name)
        if self.pause:
            time.sleep(self.pause)
        return x


def test_paired_times_warms_up_sizes_samples_and_interleaves() -> None:
    log: list[str] = []
    slow, fast = Counted("slow", 2 * SAMPLE_SECONDS, log), Counted("fast", 0.0, log)
    times = paired_times({"slow": slow, "fast": fast}, (torch.zeros(1),), min_rounds=6, min_seconds=0.0, warmup=3)
    n = len(times["slow"])
    assert n == len(times["fast"]) == 6
    assert slow.calls == 3 + n  # warm-up, then one call per sample (it lasts longer than SAMPLE_SECONDS)
    k, rest = divmod(fast.calls - 3, n)
    assert k > 1 and rest == 0  # a sub-millisecond module is timed over k calls per sample
    assert min(times["slow"]) >= 2 * SAMPLE_SECONDS * 1000  # milliseconds per call
    rounds = log[6:]  # after both warm-ups: even rounds slow first, odd rounds reversed
    assert len(rounds) == n * (1 + k)
    assert rounds[:: 1 + k] == ["slow", "fast", "slow", "fast", "slow", "fast"]  # what each round starts with
    assert rounds[1 : 1 + k] == ["fast"] * k and rounds[1 + k + k] == "slow"


def test_forward_latency_summarises_the_same_loop() -> None:
    m = Counted("m", SAMPLE_SECONDS, [])
    out = forward_latency({"m": m}, (torch.zeros(1),), rounds=2, repeats=2, warmup=1, min_seconds=0.0)["m"]
    assert out["n"] == 4 and m.calls == 1 + 4
    assert out["p95_ms"] >= out["p50_ms"] >= SAMPLE_SECONDS * 1000
