"""Hardware cost model of the KWS space: params, MACs, weight/activation memory, measured latency.

Exact costs for frozen architectures, differentiable expectations under architecture
probabilities (DARTS), a latency look-up table measured on the target (torch-cpu, onnxruntime),
and NNI profilers built on them. Budgets and cost units: :mod:`nni_kws.cost.budgets`.
"""
from __future__ import annotations

import importlib
from typing import Any

#: Where each public name lives. Imported on first use (PEP 562), so that importing a light module such
#: as :mod:`nni_kws.cost.budgets` does not import torch: NNI's dispatcher imports the hardware-aware
#: tuner, which uses budgets, and gives it 10 s to connect to the NNI manager.
_HOMES: dict[str, str] = {
    "CostModel": "costmodel", "count_costs": "counter", "COSTS": "exact", "exact_costs": "exact",
    "torch_conv_linear_macs": "exact", "expected_costs": "expectation", "probs_from_alphas": "expectation",
    "BACKENDS": "latency", "LatencyTable": "latency", "UnknownConfiguration": "latency", "make_runner": "latency",
    "measure_model": "latency", "time_runners": "latency", "Layer": "layers", "SpaceTable": "layers",
    "Unit": "layers", "space_table": "layers", "KwsCostProfiler": "profilers", "KwsLatencyProfiler": "profilers",
    "KwsMacsProfiler": "profilers", "KwsParamsProfiler": "profilers", "KwsPeakMemoryProfiler": "profilers",
    "KwsWeightBytesProfiler": "profilers",
}

__all__ = list(_HOMES)


def __getattr__(name: str) -> Any:
    """``nni_kws.cost.CostModel`` and the other public names, imported from their module on first use."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value
    return value
