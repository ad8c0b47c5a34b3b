"""Recurrent layers (issue 28): an LSTM image classifier that reads an 8x8 image row by row.
torch's dynamic int8 quantizes its LSTM as well as its Linear; coverage counts the recurrent
weights under their own kind (ORT's dynamic recipe leaves them float, and says so); an ONNX export
whose batch was traced into the graph is refused at the batch it fails, not scored."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from quantgate.errors import UnsupportedModel
from quantgate.quantize.onnx_backend import OrtDynamicInt8Recipe, OrtFp32Recipe
from quantgate.quantize.recipes import apply_recipe
from quantgate.quantize.torch_backend import DynamicInt8Recipe


class RowLSTM(nn.Module):
    def __init__(self, baked: bool = False) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 32, batch_first=True)
        self.head = nn.Linear(32, 10)
        self.baked = baked

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.view(x.shape[0], 8, 8)
        if self.baked:  # int(): the exporter's trace records the batch as a constant
            b = int(x.shape[0])
            state = (torch.zeros(1, b, 32), torch.zeros(1, b, 32))
            out, _ = self.lstm(rows, state)
        else:
            out, _ = self.lstm(rows)
        return self.head(out[:, -1])


@pytest.fixture(scope="module")
def calibration() -> list[tuple[torch.Tensor, ...]]:
    torch.manual_seed(0)
    return [(torch.randn(16, 64),) for _ in range(2)]


def test_dynamic_int8_quantizes_the_lstm_and_counts_it(calibration: list[tuple[torch.Tensor, ...]]) -> None:
    torch.manual_seed(0)
    model = RowLSTM().eval()
    res = apply_recipe(model, DynamicInt8Recipe(), calibration)
    assert set(res.quantized) == {"lstm", "head"} and not res.kept_float
    assert res.coverage["Recurrent"] == {"params": 4 * 32 * (8 + 32), "quantized": 4 * 32 * (8 + 32)}
    assert res.compute_param_share == 1.0
    assert isinstance(res.module.lstm, torch.ao.nn.quantized.dynamic.LSTM)
    buf = io.BytesIO()
    torch.save(res.module, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    x = torch.randn(3, 64)
    with torch.inference_mode():
        assert torch.allclose(loaded(x), res.module(x))
        assert (loaded(x).argmax(1) == model(x).argmax(1)).float().mean() >= 2 / 3


def test_excluded_lstm_stays_float_and_is_named(calibration: list[tuple[torch.Tensor, ...]]) -> None:
    res = apply_recipe(RowLSTM().eval(), DynamicInt8Recipe(exclude=("lstm",)), calibration)
    assert res.quantized == ["head"] and res.kept_float == ["lstm"]
    assert res.coverage["Recurrent"]["quantized"] == 0


def test_ort_dynamic_int8_reports_the_lstm_as_float(calibration: list[tuple[torch.Tensor, ...]]) -> None:
    res = apply_recipe(RowLSTM().eval(), OrtDynamicInt8Recipe(), calibration)
    assert res.coverage["Recurrent"]["params"] == 4 * 32 * (8 + 32)
    assert res.coverage["Recurrent"]["quantized"] == 0
    assert res.compute_param_share < 0.1  # only the head's 320 of 5,440 compute weights


def test_an_export_with_a_traced_batch_is_refused_at_the_batch_it_fails(
    calibration: list[tuple[torch.Tensor, ...]],
) -> None:
    with pytest.raises(UnsupportedModel, match=r"fails at batch 1 \(exported at batch 16\)"):
        apply_recipe(RowLSTM(baked=True).eval(), OrtFp32Recipe(), calibration)
    res = apply_recipe(RowLSTM().eval(), OrtFp32Recipe(), calibration)  # a dynamic batch passes
    with torch.inference_mode():
        assert res.module(torch.randn(1, 64)).shape == (1, 10)
        assert res.module(torch.randn(40, 64)).shape == (40, 10)
