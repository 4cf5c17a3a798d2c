"""Quantization settings NNI 3.0 lacks for the 1-D layers of our models.

NNI matches modules by exact class name against ``QuantizationSetting.registry``, which covers
``Conv1d``, ``Linear``, ``ReLU``, ``BatchNorm1d`` and a few 2-D layers but no 1-D pooling; a
config naming ``AvgPool1d`` would fail with "AvgPool1d is not registered". We register the
activation-only setting (``_input_``/``_output_`` targets, no parameters) for them, and for our
own parameter-free :class:`~nni_kws.space.blocks.LogCompression`.
"""
from __future__ import annotations

from nni.compression.base.setting import QuantizationSetting

__all__ = ["ACTIVATION_LAYERS", "register_1d_settings"]

#: Parameter-free layers of KWS models that NNI's registry does not know (class names).
ACTIVATION_LAYERS = ("AvgPool1d", "AdaptiveAvgPool1d", "MaxPool1d", "AdaptiveMaxPool1d", "Identity",
                     "Dropout", "Flatten", "LogCompression")


def register_1d_settings() -> list[str]:
    """Register :data:`ACTIVATION_LAYERS` with NNI (idempotent); returns the names added now."""
    added = [name for name in ACTIVATION_LAYERS if name not in QuantizationSetting.registry]
    for name in added:
        QuantizationSetting.register(name, QuantizationSetting.activation_setting)
    return added
