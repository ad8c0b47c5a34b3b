"""What each recipe quantized, counted in parameters by layer kind (issue #10), the hardware
target it was built for (issue #11), the lossless ort-fp32 recipe, and ORT candidates that
carry no float copy of a quantized weight."""

from __future__ import annotations

import io
import json

import onnx
import pytest
import torch
from torch import nn

from quantgate import hardware
from quantgate.models.tabular import TabularMLP
from quantgate.quantize.base import module_coverage
from quantgate.quantize.onnx_backend import (
    OrtDynamicInt8Recipe,
    OrtFp32Recipe,
    OrtStaticInt8Recipe,
    graph_coverage,
)
from quantgate.quantize.recipes import apply_recipe, recipe_from_dict
from quantgate.quantize.torch_backend import DynamicInt8Recipe


class SmallCNN(nn.Module):
    """Digits-sized CNN: (N, 1, 8, 8) images, 10 classes; the convolutions hold most weights."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.head = nn.Linear(32 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class SeqNet(nn.Module):
    """Token ids -> Embedding -> Conv1d -> Linear: every layer kind but Conv2d."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(500, 32)
        self.conv = nn.Conv1d(32, 32, 3, padding=1)
        self.head = nn.Linear(32, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(self.emb(ids).transpose(1, 2)).relu().mean(-1))


def _images(n: int = 4) -> list[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.rand(32, 1, 8, 8, generator=g),) for _ in range(n)]


@pytest.fixture()
def cnn() -> SmallCNN:
    torch.manual_seed(0)
    return SmallCNN().eval()


def _weights(m: nn.Module, kind: type) -> int:
    return sum(mod.weight.numel() for mod in m.modules() if type(mod) is kind)


def _share_ok(res: object) -> None:
    cov = res.coverage  # type: ignore[attr-defined]
    total = sum(v["params"] for v in cov.values())
    assert res.quantized_param_share == pytest.approx(sum(v["quantized"] for v in cov.values()) / total)  # type: ignore[attr-defined]
    assert 0.0 <= res.quantized_param_share <= 1.0  # type: ignore[attr-defined]
    json.dumps(res.summary())  # type: ignore[attr-defined]


# --- coverage --------------------------------------------------------------------------------


def test_mlp_coverage_counts_parameters() -> None:
    torch.manual_seed(0)
    mlp = TabularMLP(16).eval()
    total = sum(p.numel() for p in mlp.parameters())
    linear_w = _weights(mlp, nn.Linear)
    res = apply_recipe(mlp, DynamicInt8Recipe())
    assert res.coverage["Linear"] == {"params": linear_w, "quantized": linear_w}
    assert res.coverage["other"]["quantized"] == 0  # biases and norms stay float
    assert sum(v["params"] for v in res.coverage.values()) == total
    assert res.quantized_param_share == pytest.approx(linear_w / total)
    _share_ok(res)
    res = apply_recipe(mlp, DynamicInt8Recipe(exclude=("body.0",)))
    assert res.coverage["Linear"]["quantized"] == linear_w - mlp.body[0].weight.numel()


def test_cnn_coverage_torch_dynamic_leaves_the_convolutions(cnn: SmallCNN) -> None:
    res = apply_recipe(cnn, DynamicInt8Recipe())
    conv_w = _weights(cnn, nn.Conv2d)
    assert res.coverage["Conv2d"] == {"params": conv_w, "quantized": 0}
    assert res.coverage["Linear"]["quantized"] == cnn.head.weight.numel()
    assert res.quantized == ["head"]
    _share_ok(res)


@pytest.mark.parametrize("recipe", [OrtDynamicInt8Recipe(), OrtStaticInt8Recipe()], ids=lambda r: r.TYPE)
def test_ort_recipes_quantize_convolutions(recipe: object, cnn: SmallCNN) -> None:
    res = apply_recipe(cnn, recipe, _images())  # type: ignore[arg-type]
    assert sorted(res.quantized) == ["features.0", "features.2", "head"] and res.kept_float == []
    conv_w = _weights(cnn, nn.Conv2d)
    assert res.coverage["Conv2d"] == {"params": conv_w, "quantized": conv_w}
    assert res.coverage["Linear"]["quantized"] == cnn.head.weight.numel()
    assert res.quantized_param_share > 0.95
    _share_ok(res)
    x = _images(1)[0][0]
    with torch.inference_mode():
        assert (res.module(x).softmax(-1) - cnn(x).softmax(-1)).abs().max() < 0.05
    # the quantized graph computes the convolutions on int8 (ConvInteger or QDQ Conv)
    ops = {n.op_type for n in onnx.load_from_string(res.module.onnx_bytes).graph.node}
    assert "ConvInteger" in ops or "DequantizeLinear" in ops


def test_ort_conv_exclusion(cnn: SmallCNN) -> None:
    res = apply_recipe(cnn, OrtStaticInt8Recipe(exclude=("features.0",)), _images())
    assert res.kept_float == ["features.0"]
    w0 = cnn.features[0].weight.numel()
    assert res.coverage["Conv2d"]["quantized"] == _weights(cnn, nn.Conv2d) - w0


def test_embeddings_and_conv1d_by_kind() -> None:
    torch.manual_seed(0)
    net = SeqNet().eval()
    ids = [(torch.randint(0, 500, (16, 12), generator=torch.Generator().manual_seed(i)),) for i in range(3)]
    res = apply_recipe(net, OrtDynamicInt8Recipe(), ids)
    assert res.coverage["Embedding"] == {"params": 500 * 32, "quantized": 0}
    assert res.coverage["Conv1d"]["quantized"] == net.conv.weight.numel()
    assert sorted(res.quantized) == ["conv", "head"]
    res = apply_recipe(net, OrtDynamicInt8Recipe(quantize_embeddings=True), ids)
    assert res.coverage["Embedding"] == {"params": 500 * 32, "quantized": 500 * 32}
    assert sorted(res.quantized) == ["conv", "emb", "head"]
    assert res.hardware["float_copies"] == [] and res.size_by_kind["float32"] < 2_000
    assert module_coverage(net, ["emb"])["Embedding"]["quantized"] == 500 * 32


# --- size: no float copy of a quantized weight -----------------------------------------------


@pytest.mark.parametrize(
    "recipe",
    [OrtDynamicInt8Recipe(), OrtStaticInt8Recipe(), OrtDynamicInt8Recipe(target="avx2")],
    ids=lambda r: f"{r.TYPE}-{r.target}",
)
def test_no_float_copy_of_a_quantized_weight(recipe: object, cnn: SmallCNN) -> None:
    res = apply_recipe(cnn, recipe, _images())  # type: ignore[arg-type]
    q = onnx.load_from_string(res.module.onnx_bytes)
    floats = {t.name for t in q.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    for name in ("features.0.weight", "features.2.weight", "head.weight"):
        assert name not in floats, f"{name} kept a float copy"
    src = onnx.load_from_string(apply_recipe(cnn, OrtFp32Recipe(), _images()).module.onnx_bytes)
    assert graph_coverage(src, q)[1] == []
    # the weights are stored as 1-byte integers: float32 bytes are the biases and scales only
    int_bytes = res.size_by_kind.get("int8", 0) + res.size_by_kind.get("uint8", 0)
    assert int_bytes >= _weights(cnn, nn.Conv2d) + cnn.head.weight.numel()
    assert res.size_by_kind["float32"] < 0.05 * int_bytes


def test_ort_module_file_is_not_inflated_by_pickling(cnn: SmallCNN) -> None:
    res = apply_recipe(cnn, OrtDynamicInt8Recipe(), _images())
    buf = io.BytesIO()
    torch.save(res.module, buf)
    # a bytes attribute pickled by torch.save (protocol 2) grew ~1.5x; as a uint8 tensor it is raw
    assert buf.tell() < len(res.module.onnx_bytes) + 8_000
    buf.seek(0)
    back = torch.load(buf, weights_only=False)
    assert back.onnx_bytes == res.module.onnx_bytes and isinstance(back.onnx_bytes, bytes)


# --- hardware targets --------------------------------------------------------------------------


def test_isa_detection_is_pure() -> None:
    assert hardware.isa_from("x86_64", {"avx2", "fma"}) == "avx2"
    assert hardware.isa_from("x86_64", {"avx2", "avx512f"}) == "avx512"
    assert hardware.isa_from("x86_64", {"avx2", "avx512f", "avx512_vnni"}) == "avx512_vnni"
    assert hardware.isa_from("aarch64", {"asimd"}) == "arm64"
    assert hardware.isa_from("x86_64", set(), "AVX2") == "avx2"
    # what CPUID says wins over /proc/cpuinfo (an emulated AVX2 CPU on an AVX512 host)
    rome = {"avx2": True, "avx512": False, "avx512_vnni": False}
    assert hardware.isa_from("x86_64", {"avx2", "avx512f", "avx512_vnni"}, "AVX2", rome) == "avx2"
    assert hardware.isa_from("x86_64", {"avx2"}, "", {"avx2": True, "avx512": True, "avx512_vnni": True}) == (
        "avx512_vnni"
    )
    assert hardware.isa_from("x86_64", set(), "", {"avx2": True, "avx512": True, "avx512_vnni": False}) == "avx512"
    info = hardware.host_info()
    assert info["isa"] in hardware.ISAS and info["cpu_count"] >= 1 and info["torch_quantized_engine"]
    assert hardware.resolve_target("auto") == info["isa"]
    assert hardware.torch_engine("arm64") == "qnnpack" and hardware.torch_engine("avx2") == "x86"


def test_unknown_target_rejected() -> None:
    from quantgate.errors import ConfigError

    with pytest.raises(ConfigError, match="target"):
        OrtDynamicInt8Recipe(target="sse4")
    with pytest.raises(ConfigError, match="target"):
        DynamicInt8Recipe(target="sse4")


def _weight_dtypes(res: object) -> set[int]:
    q = onnx.load_from_string(res.module.onnx_bytes)  # type: ignore[attr-defined]
    return {t.data_type for t in q.graph.initializer if t.name.endswith("weight_quantized")}


def test_avx2_and_vnni_targets_build_their_own_configs(cnn: SmallCNN) -> None:
    avx2 = apply_recipe(cnn, OrtDynamicInt8Recipe(target="avx2"), _images())
    vnni = apply_recipe(cnn, OrtDynamicInt8Recipe(target="avx512_vnni"), _images())
    a, v = avx2.hardware["ort_config"], vnni.hardware["ort_config"]
    assert a["preset"].endswith(".avx2") and a["reduce_range"] is True and a["weights"] == "QUInt8"
    assert v["preset"].endswith(".avx512_vnni") and v["reduce_range"] is False and v["weights"] == "QInt8"
    # ... and the ORT models really differ: u8 weights for avx2, s8 for VNNI
    assert _weight_dtypes(avx2) == {onnx.TensorProto.UINT8}
    assert _weight_dtypes(vnni) == {onnx.TensorProto.INT8}
    for res, target in ((avx2, "avx2"), (vnni, "avx512_vnni")):
        assert res.hardware["target"] == target and res.hardware["requested_target"] == target
        assert res.hardware["host"]["isa"] in hardware.ISAS
        assert res.recipe_json["_data"]["target"] == target
        assert recipe_from_dict(json.loads(json.dumps(res.recipe_json))) == res.resolved
    static = apply_recipe(cnn, OrtStaticInt8Recipe(target="avx2"), _images())
    assert static.hardware["ort_config"]["reduce_range"] is True


def test_auto_target_resolves_to_the_host(cnn: SmallCNN) -> None:
    res = apply_recipe(cnn, OrtDynamicInt8Recipe(), _images())
    host = hardware.host_info()["isa"]
    assert res.recipe.target == "auto" and res.resolved.target == host  # type: ignore[union-attr]
    assert res.hardware["requested_target"] == "auto" and res.hardware["matches_host"]


def test_torch_dynamic_picks_the_engine_of_its_target() -> None:
    torch.manual_seed(0)
    mlp = TabularMLP(16).eval()
    before = torch.backends.quantized.engine
    res = apply_recipe(mlp, DynamicInt8Recipe(target="avx2"))
    assert res.hardware["engine"] == "x86" and res.resolved.target == "avx2"  # type: ignore[union-attr]
    assert torch.backends.quantized.engine == before  # restored


@pytest.mark.parametrize("label", ["bf16", "fp16", "int8-weight-only"])
def test_recipes_without_an_isa_kernel_record_any_target_and_the_host(label: str) -> None:
    """A float cast or a weight-only recipe is not built for an ISA: its record says so (``any``,
    which no host warns about) and still names the host that measured it, for the card and tag."""
    from quantgate.quantize.recipes import get_recipe

    torch.manual_seed(0)
    res = apply_recipe(TabularMLP(16).eval(), get_recipe(label))
    assert res.hardware["target"] == "any"
    assert res.hardware["host"] == hardware.host_info()
    assert hardware.host_mismatch(res.hardware["target"]) is None


# --- ort-fp32 ----------------------------------------------------------------------------------


def test_ort_fp32_is_lossless_and_round_trips(cnn: SmallCNN) -> None:
    res = apply_recipe(cnn, OrtFp32Recipe(), _images())
    assert res.n_quantized == 0 and res.quantized_param_share == 0.0
    assert sorted(res.kept_float) == ["features.0", "features.2", "head"]
    assert res.hardware["target"] == "any" and res.hardware["host"] == hardware.host_info()  # no ISA kernel
    assert recipe_from_dict(json.loads(json.dumps(res.recipe_json))) == OrtFp32Recipe()
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    buf = io.BytesIO()
    torch.save(res.module, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=False)
    with torch.inference_mode():
        ref, got = cnn(x), back(x)
    # stated tolerance: ONNX Runtime fp32 vs torch fp32 differ by float rounding only
    assert torch.allclose(got, ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(got.argmax(1), ref.argmax(1))


# --- an ONNX source model (no torch modules: graph nodes are the units) ----------------------


def test_onnx_source_model_coverage_and_conv_nodes(cnn: SmallCNN) -> None:
    from quantgate.quantize.onnx_backend import OrtModule, export_onnx

    data, names = export_onnx(cnn, _images(1)[0])
    source = OrtModule(data, names)
    res = apply_recipe(source, OrtStaticInt8Recipe(exclude=("/head/Gemm",)), _images())
    assert sorted(res.quantized) == ["/features/features.0/Conv", "/features/features.2/Conv"]
    assert res.kept_float == ["/head/Gemm"]
    conv_w = _weights(cnn, nn.Conv2d)
    assert res.coverage["Conv2d"] == {"params": conv_w, "quantized": conv_w}
    assert res.coverage["Linear"]["quantized"] == 0
    fp32 = apply_recipe(source, OrtFp32Recipe(), _images())
    assert fp32.n_quantized == 0 and fp32.module.onnx_bytes == data
    with pytest.raises(Exception, match="torch modules"):
        apply_recipe(source, DynamicInt8Recipe())


def test_host_mismatch_warning() -> None:
    host = hardware.host_info()["isa"]
    assert hardware.host_mismatch(host) is None and hardware.host_mismatch("any") is None
    other = "arm64" if host != "arm64" else "avx2"
    msg = hardware.host_mismatch(other)
    assert msg is not None and other in msg and host in msg


def test_compute_share_ignores_embedding_lookups() -> None:
    torch.manual_seed(0)
    net = SeqNet().eval()
    ids = [(torch.randint(0, 500, (16, 12), generator=torch.Generator().manual_seed(i)),) for i in range(2)]
    res = apply_recipe(net, OrtDynamicInt8Recipe(), ids)
    # the embedding table is most of the parameters, but a lookup gains no speed from int8
    assert res.quantized_param_share < 0.5 and res.compute_param_share == 1.0
    from quantgate.quantize.base import heaviest_kind

    assert heaviest_kind(net) == "Embedding" and heaviest_kind(net, ("Linear", "Conv1d", "Conv2d")) == "Conv1d"
    from quantgate.quantize.tuner import default_candidates

    size_first = default_candidates("size", ids, net)[0]
    assert getattr(size_first, "quantize_embeddings", False), size_first


def test_default_candidates_carry_the_target(cnn: SmallCNN) -> None:
    from quantgate.quantize.tuner import default_candidates

    recipes = default_candidates("latency", _images(1), cnn, target="avx2")
    assert recipes[0].TYPE == "ort-fp32"
    with_target = [r for r in recipes if hasattr(r, "target")]
    assert with_target and all(r.target == "avx2" for r in with_target)  # type: ignore[attr-defined]
