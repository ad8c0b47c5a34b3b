"""MLflow's ``pytorch`` flavor, in both serialization formats.

- ``pickle``: the ``nn.Module`` itself.
- ``pt2`` (the MLflow 3.17 default): a ``torch.export`` ExportedProgram. ``mlflow.pytorch.load_model``
  gives an unlifted graph module whose ``.eval()`` raises and whose layers are ``aten`` calls on
  bare parameters, so no recipe would find a layer. :func:`rebuild_layers` turns each
  ``aten.linear`` / ``aten.conv1d`` / ``aten.conv2d`` call back into a real ``nn.Linear`` /
  ``nn.Conv1d`` / ``nn.Conv2d`` at the original name (``fc1``, ``encoder.0``...), in a plain
  ``torch.fx.GraphModule`` that behaves like any module (eval, pickling, ONNX export).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx, nn

from quantgate.models.wrapped import WrappedModel
from quantgate.sources.base import SourceContext, register_source
from quantgate.sources.layout import tensor_model

_aten = torch.ops.aten
_LAYERS: dict[Any, type[nn.Module]] = {
    _aten.linear.default: nn.Linear,
    _aten.conv1d.default: nn.Conv1d,
    _aten.conv2d.default: nn.Conv2d,
}


def rebuild_layers(gm: nn.Module) -> fx.GraphModule:
    """A plain GraphModule with real Linear/Conv layers in place of ``aten`` calls on parameters."""
    plain = fx.GraphModule(gm, gm.graph)
    graph = plain.graph
    for node in list(graph.nodes):
        if node.op == "call_module" and str(node.target).startswith("_guards"):
            graph.erase_node(node)  # export's shape guard; quantgate feeds the signature's shape
            continue
        layer_type = _LAYERS.get(node.target) if node.op == "call_function" else None
        if layer_type is None:
            continue
        x, w_node, *rest = node.args
        b_node = rest[0] if rest else None
        if w_node.op != "get_attr" or (b_node is not None and getattr(b_node, "op", None) != "get_attr"):
            continue
        owner = str(w_node.target).rsplit(".", 1)[0] if "." in str(w_node.target) else None
        if owner is None or str(w_node.target) != f"{owner}.weight":
            continue
        if b_node is not None and str(b_node.target) != f"{owner}.bias":
            continue
        weight = plain.get_parameter(str(w_node.target))
        bias = plain.get_parameter(str(b_node.target)) if b_node is not None else None
        layer = _make_layer(layer_type, weight, bias, rest[1:])
        parent_name, _, leaf = owner.rpartition(".")
        parent = plain.get_submodule(parent_name) if parent_name else plain
        container = getattr(parent, leaf)
        if type(container) is not nn.Module or len(list(container.children())):
            continue  # the owner is a real module already (or holds more): leave the call as it is
        setattr(parent, leaf, layer)
        with graph.inserting_before(node):
            call = graph.call_module(owner, (x,))
        node.replace_all_uses_with(call)
        graph.erase_node(node)
    for node in list(graph.nodes):
        if node.op == "get_attr" and not node.users:
            graph.erase_node(node)
    if hasattr(plain, "_guards_fn"):
        delattr(plain, "_guards_fn")
    graph.lint()
    plain.recompile()
    return plain.eval()


def _make_layer(kind: type[nn.Module], weight: torch.Tensor, bias: torch.Tensor | None, extra: list[Any]) -> nn.Module:
    if kind is nn.Linear:
        layer: nn.Module = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    else:
        stride, padding, dilation, groups = ([*extra, None, None, None, None])[:4]
        dims = 1 if kind is nn.Conv1d else 2
        layer = kind(  # type: ignore[call-arg]
            weight.shape[1] * (groups or 1),
            weight.shape[0],
            tuple(weight.shape[2:]),
            stride=stride if stride is not None else 1,
            padding=padding if padding is not None else 0,
            dilation=dilation if dilation is not None else 1,
            groups=groups or 1,
            bias=bias is not None,
        )
        assert layer.weight.dim() == dims + 2
    layer.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
    if bias is not None:
        layer.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
    return layer


def _is_pt2(ctx: SourceContext) -> bool:
    from mlflow.artifacts import list_artifacts

    data = ctx.meta.flavors["pytorch"].get("model_data", "data")
    names = [a.path.rsplit("/", 1)[-1] for a in list_artifacts(f"{ctx.uri}/{data}")]
    return "model.pt2" in names


@register_source("pytorch", lambda meta: "pytorch" in meta.flavors)
def load_pytorch(ctx: SourceContext) -> WrappedModel:
    import mlflow.pytorch

    module = mlflow.pytorch.load_model(ctx.uri, map_location="cpu")
    fmt = "pickle"
    if isinstance(module, fx.GraphModule) and _is_pt2(ctx):
        module, fmt = rebuild_layers(module), "pt2"
    module.eval()
    return tensor_model(ctx, module, serialization_format=fmt)
