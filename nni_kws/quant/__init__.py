"""Quantization of KWS models through NNI 3.0's compression framework, with learned bit-widths.

- :class:`LearnedBitwidthQuantizer`: an NNI ``Quantizer`` learning step size and range per tensor
  (Uhlich et al. 2020, U3), bit-widths derived, bounded and pushed under memory budgets;
- :func:`fixed_quantizer`: NNI's QAT / LSQ at one bit-width, the baseline;
- :func:`quantize_model`: prepare (bake SincConv, fold BN), fine-tune, report, export ONNX QDQ;
  :func:`float_fine_tune`: the same fine-tuning without quantizers (the control);
- :func:`bit_report`, :func:`deploy_model`, :func:`export_onnx`, :func:`onnx_agreement`;
- :func:`layer_sensitivity` / :func:`sensitivity_bits`: where quantization loses accuracy, and bits
  allocated by it; :func:`plot_quantize_curve`: the benchmark's accuracy-vs-bits PNG.

Importing this package registers NNI quantization settings for 1-D pooling layers (``settings``).
"""
from .api import (
    METHODS,
    QuantResult,
    TrainingDiverged,
    float_fine_tune,
    make_evaluator,
    quantize_model,
    tune_lr,
)
from .apply_methods import U3ClampRound
from .export import QDQ, QuantizedLayer, deploy_model, export_onnx, onnx_agreement, quant_ranges
from .fixed import FIXED_QUANTIZERS, fixed_quantizer
from .learned_bits import QPARAM_LR_SCALE, LearnedBitwidthQuantizer, bits_for_levels, levels_for_bits
from .plot import plot_quantize_curve
from .prepare import QUANT_OP_TYPES, check_plain_model, config_list, fold_batchnorm, prepare_model, unsigned_inputs
from .report import DEFINITIONS, bit_report, size_bytes, summarize, target_rows
from .sensitivity import allocate_bits, layer_sensitivity, sensitivity_bits, target_sensitivity
from .settings import register_1d_settings

__all__ = [
    "QPARAM_LR_SCALE", "LearnedBitwidthQuantizer", "U3ClampRound", "bits_for_levels", "levels_for_bits",
    "FIXED_QUANTIZERS", "fixed_quantizer",
    "METHODS", "QuantResult", "TrainingDiverged", "quantize_model", "tune_lr", "make_evaluator",
    "float_fine_tune",
    "QUANT_OP_TYPES", "prepare_model", "fold_batchnorm", "check_plain_model", "unsigned_inputs", "config_list",
    "DEFINITIONS", "bit_report", "summarize", "size_bytes", "target_rows",
    "QDQ", "QuantizedLayer", "deploy_model", "export_onnx", "onnx_agreement", "quant_ranges",
    "register_1d_settings", "plot_quantize_curve",
    "layer_sensitivity", "target_sensitivity", "allocate_bits", "sensitivity_bits",
]
