"""Export a quantized model to ONNX with QuantizeLinear/DequantizeLinear (QDQ) and check it with onnxruntime.

Every quantized target becomes a QDQ pair in an 8-bit container (``int8``, or ``uint8`` when its
range is non-negative) with the learned scale; bit-widths below 8 are a ``Clip`` to the learned
integer range before ``QuantizeLinear``, so the int8 tensor only takes ``2^b`` (or ``2^b - 1``) values.
Weights are stored as integer initializers feeding ``DequantizeLinear``, as in onnxruntime's QDQ format.
An ``'int32'`` bias target (the learned quantizer's) is stored in float32 on its grid ``d_input * d_weight``;
onnxruntime turns it into an int32 initializer exactly (its ``WeightBiasQuantization`` rewrite). Without
a bias target (NNI's QAT/LSQ) the float bias is off that grid, and that rewrite changes the numbers a little.

The graph is made by torch's TorchScript-based exporter (``dynamo=False``): it maps
``torch.fake_quantize_per_tensor_affine`` to a QDQ pair, while the dynamo exporter needs onnxscript
and decomposes fake quantization into float ops.
"""
from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from nni.compression.base.compressor import Quantizer
from nni.compression.base.target_space import TargetType
from onnx import numpy_helper
from torch import nn

from nni_kws.space.spectrogram import exportable

__all__ = ["QDQ", "QuantizedLayer", "deploy_model", "export_onnx", "onnx_agreement", "quant_ranges"]

_CONTAINERS = {"int8": (-128, 127), "uint8": (0, 255)}


class QDQ(nn.Module):
    """Quantize-dequantize with scale, zero point and integer range ``[qmin, qmax]`` in an 8-bit container."""

    def __init__(self, scale: float, zero_point: int, qmin: int, qmax: int) -> None:
        super().__init__()
        self.container = "uint8" if qmin >= 0 else "int8"
        cmin, cmax = _CONTAINERS[self.container]
        if not (cmin <= qmin <= zero_point <= qmax <= cmax) or scale <= 0:
            raise ValueError(f"range [{qmin}, {qmax}] with zero point {zero_point} and scale {scale} "
                             f"does not fit an {self.container} container (bits > 8?)")
        self.qmin, self.qmax, self.zero_point = qmin, qmax, zero_point
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.register_buffer("zp", torch.tensor(zero_point, dtype=torch.int32))
        self.clip = (qmin, qmax) != (cmin, cmax)

    @property
    def bounds(self) -> tuple[float, float]:
        s = float(self.scale)
        return (self.qmin - self.zero_point) * s, (self.qmax - self.zero_point) * s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.clip:
            x = torch.clamp(x, *self.bounds)
        return torch.fake_quantize_per_tensor_affine(x, self.scale, self.zp, *_CONTAINERS[self.container])

    def extra_repr(self) -> str:
        return f"{self.container}[{self.qmin}, {self.qmax}], scale={float(self.scale):.4g}, zp={self.zero_point}"


class QuantizedLayer(nn.Module):
    """A float layer with QDQ on its inputs (``_input_<i>``), parameters and output (``_output_0``)."""

    def __init__(self, module: nn.Module, qdqs: dict[str, QDQ]) -> None:
        super().__init__()
        self.module = module
        self.qdqs = nn.ModuleDict(qdqs)

    def forward(self, *args: Any) -> Any:
        args = tuple(self.qdqs[f"_input_{i}"](a) if f"_input_{i}" in self.qdqs else a for i, a in enumerate(args))
        params = {name: self.qdqs[name](getattr(self.module, name)) if name in self.qdqs else getattr(self.module, name)
                  for name in ("weight", "bias") if name in self.qdqs or hasattr(self.module, name)}
        # Explicit functional forms: the ONNX tracer refuses torch.func.functional_call.
        if isinstance(self.module, nn.Conv1d):
            out = self.module._conv_forward(args[0], params["weight"], params["bias"])
        elif isinstance(self.module, nn.Linear):
            out = F.linear(args[0], params["weight"], params["bias"])
        elif any(not name.startswith(("_input_", "_output_")) for name in self.qdqs):
            raise TypeError(f"parameter quantization of {type(self.module).__name__} cannot be exported")
        else:
            out = self.module(*args)
        return self.qdqs["_output_0"](out) if "_output_0" in self.qdqs else out


def quant_ranges(quantizer: Quantizer) -> dict[str, dict[str, dict[str, Any]]]:
    """``{module: {target: {scale, zero_point, qmin, qmax, bits}}}`` of any NNI quantizer.

    Our quantizer reports the learned integer range (``qmin``/``qmax``) in its calibration config;
    NNI's QAT/LSQ use the range of the ``quant_dtype`` kept on the target space.
    """
    calibration = quantizer.get_calibration_config()
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for module_name, wrapper in quantizer._module_wrappers.items():
        for target_name, target_space in wrapper.quantization_target_spaces.items():
            config = calibration[module_name][target_name]
            if config["scale"] is None or config["zero_point"] is None:
                raise ValueError(f"{module_name}.{target_name} has no scale yet: train or calibrate the quantizer")
            if torch.as_tensor(config["scale"]).numel() != 1:
                raise ValueError(f"{module_name}.{target_name}: only per-tensor quantization can be exported")
            scale, zero_point = (float(torch.as_tensor(config[k]).detach()) for k in ("scale", "zero_point"))
            qmin, qmax = int(config.get("qmin", target_space.qmin)), int(config.get("qmax", target_space.qmax))
            if scale < 0 and zero_point == 0 and qmin in (0, -qmax):  # LSQ's step size can go negative (NNI's LSQ
                if qmin == 0:  # does not keep it positive); unsigned: clamp(x / s, 0, qmax) is 0 for every x >= 0
                    qmax = 0
                scale = -scale  # a symmetric grid is the same with |scale|
            out.setdefault(module_name, {})[target_name] = dict(
                scale=scale, zero_point=int(round(zero_point)), qmin=qmin, qmax=qmax, bits=int(config["quant_bits"]))
    return out


def deploy_model(quantizer: Quantizer) -> nn.Module:
    """A plain torch copy of the quantizer's model where every quantized layer is a :class:`QuantizedLayer`.

    It computes what the fake-quant model computes (in eval mode) and exports to ONNX QDQ.
    """
    ranges = quant_ranges(quantizer)
    quantizer.unwrap_model()  # plain modules holding the trained parameters, to copy
    try:
        model = copy.deepcopy(quantizer.bound_model).eval()
    finally:
        quantizer.wrap_model()
    for name, targets in ranges.items():
        module = model.get_submodule(name)
        target_spaces = quantizer._module_wrappers[name].quantization_target_spaces
        qdqs = {}
        with torch.no_grad():
            for target, r in targets.items():
                param = getattr(module, target) if target_spaces[target].type is TargetType.PARAMETER else None
                if target == "bias" and r["bits"] > 8:  # int32 bias: left float, on the grid the engine adds it on
                    scale = targets["_input_0"]["scale"] * targets["weight"]["scale"]  # the accumulator's
                    param.copy_(torch.round(param / scale) * scale)
                    continue
                qdqs[target] = QDQ(r["scale"], r["zero_point"], r["qmin"], r["qmax"])
                if param is not None:  # store weights on their grid: no Clip node, QuantizeLinear folds to integers
                    param.copy_(qdqs[target](param))
                    qdqs[target].clip = False
        model.set_submodule(name, QuantizedLayer(module, qdqs))
    return model


def export_onnx(model: nn.Module, path: str | Path, example: torch.Tensor, opset: int = 17) -> Path:
    """Export ``model`` (e.g. :func:`deploy_model`) with a dynamic batch; weights become integer initializers.
    A torchaudio spectrogram (MFCC and log-mel front ends) is exported as a DFT convolution
    (:mod:`nni_kws.space.spectrogram`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated (see module docstring)
        torch.onnx.export(exportable(model).eval(), (example,), buffer, dynamo=False, opset_version=opset,
                          input_names=["waveform"], output_names=["logits"],
                          dynamic_axes={"waveform": {0: "batch"}, "logits": {0: "batch"}})
    graph = _store_integer_weights(onnx.load_from_string(buffer.getvalue()))
    onnx.checker.check_model(graph)
    onnx.save(graph, str(path))
    return path


def _store_integer_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace ``constant → QuantizeLinear`` by the integer constant it produces (onnx has no such pass)."""
    graph = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        elif node.op_type == "Identity" and node.input[0] in consts:
            consts[node.output[0]] = consts[node.input[0]]
    folded = []
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or not all(name in consts for name in node.input):
            continue
        x, scale, zero_point = (consts[name] for name in node.input)
        info = np.iinfo(zero_point.dtype)
        q = np.clip(np.round(x.astype(np.float32) / scale.astype(np.float32)) + zero_point.astype(np.int32),
                    info.min, info.max).astype(zero_point.dtype)
        graph.initializer.append(numpy_helper.from_array(q, node.output[0]))
        folded.append(node)
    for node in folded:
        graph.node.remove(node)
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    for node in [n for n in graph.node if n.op_type in ("Constant", "Identity") and n.output[0] not in used]:
        graph.node.remove(node)
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    return model


@torch.no_grad()
def onnx_agreement(model: nn.Module, onnx_path: str | Path, batches: Iterable[Any]) -> dict[str, float]:
    """Top-1 agreement of ``model`` (run in eval mode on CPU) with the ONNX file under onnxruntime."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    agree, total, max_diff = 0, 0, 0.0
    try:
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            ours = model(x.to(device)).cpu()
            theirs = torch.from_numpy(session.run(None, {input_name: x.cpu().numpy()})[0])
            agree += int((ours.argmax(1) == theirs.argmax(1)).sum())
            total += len(x)
            max_diff = max(max_diff, float((ours - theirs).abs().max()))
    finally:
        model.train(was_training)
    if not total:
        raise ValueError("no clips to compare the ONNX model on")
    return {"agreement": agree / total, "clips": total, "max_abs_logit_diff": max_diff}
