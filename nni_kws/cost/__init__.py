"""Hardware cost model of the KWS space: params, MACs, weight/activation memory, measured latency.

Exact costs for frozen architectures, differentiable expectations under architecture
probabilities (DARTS), a latency look-up table measured on the target (torch-cpu, onnxruntime),
and NNI profilers built on them. Budgets and cost units: :mod:`nni_kws.cost.budgets`.
"""
from .costmodel import CostModel
from .counter import count_costs
from .exact import COSTS, exact_costs, torch_conv_linear_macs
from .expectation import expected_costs, probs_from_alphas
from .latency import BACKENDS, LatencyTable, UnknownConfiguration, make_runner, measure_model, time_runners
from .layers import Layer, SpaceTable, Unit, space_table
from .profilers import (KwsCostProfiler, KwsLatencyProfiler, KwsMacsProfiler, KwsParamsProfiler, KwsPeakMemoryProfiler,
                        KwsWeightBytesProfiler)

__all__ = ["CostModel", "count_costs", "COSTS", "exact_costs", "expected_costs", "probs_from_alphas", "torch_conv_linear_macs",
           "BACKENDS", "LatencyTable", "UnknownConfiguration", "make_runner", "measure_model", "time_runners",
           "Layer", "SpaceTable", "Unit", "space_table", "KwsCostProfiler", "KwsMacsProfiler", "KwsParamsProfiler",
           "KwsWeightBytesProfiler", "KwsLatencyProfiler", "KwsPeakMemoryProfiler"]
