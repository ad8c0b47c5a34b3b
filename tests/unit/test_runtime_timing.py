"""The one timing loop (``evaluate.runtime.paired_times``): warm-up, samples sized to the module's
speed, interleaved rounds. Real modules; only lower bounds of time are asserted (a sleep lasts at
least its length), so a loaded host cannot make it flaky."""

from __future__ import annotations

import threading
import time

import torch
from torch import nn

from quantgate.evaluate import runtime
from quantgate.evaluate.runtime import SAMPLE_SECONDS, forward_latency, paired_times, settle


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


def _count_waits(monkeypatch) -> list[int]:
    """Calls of :func:`settle` (the real one still runs), one list item per call."""
    waits: list[int] = []
    real_settle = runtime.settle

    def counted(*args, **kwargs) -> float:
        waits.append(1)
        return real_settle(*args, **kwargs)

    monkeypatch.setattr(runtime, "settle", counted)
    return waits


def test_paired_times_warms_up_sizes_samples_and_interleaves(monkeypatch) -> None:
    waits = _count_waits(monkeypatch)
    log: list[str] = []
    slow, fast = Counted("slow", 2 * SAMPLE_SECONDS, log), Counted("fast", 0.0, log)
    times = paired_times({"slow": slow, "fast": fast}, (torch.zeros(1),), min_rounds=6, min_seconds=0.0, warmup=3)
    n = len(times["slow"])
    assert n == len(times["fast"]) == 6
    # warm-up: 2 calls, then the sizing sample (an untimed call and a timed one); each sample after
    # that is one timed call for slow (longer than SAMPLE_SECONDS and WARM_SECONDS) and, for fast,
    # untimed calls for WARM_SECONDS and then k timed calls
    assert slow.calls == 4 + n
    per, rest = divmod(fast.calls - 4, n)
    assert per > 2 and rest == 0
    assert min(times["slow"]) >= 2 * SAMPLE_SECONDS * 1000  # milliseconds per call
    rounds = log[8:]  # after both warm-ups: even rounds slow first, odd rounds reversed
    width = 1 + per
    assert len(rounds) == n * width
    assert rounds[::width] == ["slow", "fast", "slow", "fast", "slow", "fast"]  # what each round starts with
    assert rounds[1:width] == ["fast"] * per and rounds[width + per] == "slow"
    assert len(waits) == 2 + 2 * n  # two modules: a wait before every sample, sizing ones included


def test_forward_latency_summarises_the_same_loop(monkeypatch) -> None:
    waits = _count_waits(monkeypatch)
    m = Counted("m", SAMPLE_SECONDS, [])
    out = forward_latency({"m": m}, (torch.zeros(1),), rounds=2, repeats=2, warmup=1, min_seconds=0.0)["m"]
    assert out["n"] == 4 and m.calls == 2 + 4  # the sizing sample (two calls), then 4 samples of one
    assert len(waits) == 1  # a module timed alone waits only before its sizing sample
    assert out["p95_ms"] >= out["p50_ms"] >= SAMPLE_SECONDS * 1000


class Spinner(nn.Module):
    """Returns at once but leaves a thread busy for ``spin`` seconds, as ONNX Runtime's and
    OpenMP's worker threads spin after a call."""

    def __init__(self, spin: float) -> None:
        super().__init__()
        self.spin = spin
        self.busy = threading.Event()

    def _loop(self) -> None:
        end = time.perf_counter() + self.spin
        while time.perf_counter() < end:
            pass
        self.busy.clear()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.busy.set()
        threading.Thread(target=self._loop, daemon=True).start()
        return x


class Probe(nn.Module):
    """Records, at each call, whether the spinner's thread was still busy."""

    def __init__(self, spinner: Spinner) -> None:
        super().__init__()
        self.spinner, self.seen = spinner, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(self.spinner.busy.is_set())
        time.sleep(2 * SAMPLE_SECONDS)
        return x


def test_settle_waits_for_spinning_threads() -> None:
    spinner = Spinner(0.05)
    spinner(torch.zeros(1))
    assert spinner.busy.is_set()
    waited = settle()
    assert not spinner.busy.is_set() and waited >= 0.01


def test_no_sample_starts_while_the_previous_module_spins() -> None:
    spinner = Spinner(0.03)
    probe = Probe(spinner)
    times = paired_times({"spin": spinner, "probe": probe}, (torch.zeros(1),), min_rounds=4, min_seconds=0.0)
    assert len(times["probe"]) == 4 and len(probe.seen) == 2 + 4  # the sizing sample (two calls), then 4 samples
    assert not any(probe.seen)
