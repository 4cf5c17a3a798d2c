"""Multiply-accumulates of MFCC / log-mel feature extraction, defined once for the space and the peers.

torch's FLOP counter sees only the matrix products of a torchaudio front end (mel filterbank, DCT)
and not the FFT inside ``torch.stft``; a raw-audio model's SincConv, on the other hand, is a conv and
is counted in full. To compare raw-audio and MFCC models fairly the feature extractor is costed here,
per clip (batch 1), as real multiply-accumulates (MACs):

======================  =====================================================================
part                    MACs
======================  =====================================================================
window                  ``F · win_length`` (one multiply per windowed sample; the zero
                        padding of a window shorter than ``n_fft`` costs nothing)
rfft                    ``F · rfft_macs(n_fft)``, see :func:`rfft_macs`
power                   ``F · (n_fft/2 + 1) · 2`` (``re² + im²``); a magnitude spectrum
                        (``power=1``) adds its square root, counted as 1 per bin
mel                     ``F · (n_fft/2 + 1) · n_mels`` (dense filterbank, as torchaudio computes it)
log                     ``F · n_mels`` (a log, or a dB conversion, counted as 1 per element)
dct                     ``F · n_mels · n_mfcc`` (0 for a log-mel front end)
======================  =====================================================================

``F`` is the number of frames the module actually produces for the clip (read from a forward pass,
so centring and padding conventions need no formula). Element-wise clamps, offsets and the
``top_db`` maximum are comparisons or adds, not multiplies, and are not counted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["SpectralSettings", "rfft_macs", "feature_macs", "spectral_settings", "frontend_macs"]

PARTS = ("window", "rfft", "power", "mel", "log", "dct")


def rfft_macs(n_fft: int) -> int:
    """Real MACs of one ``n_fft``-point real-input FFT: ``ceil(n_fft · (log2(n_fft) + 1))``.

    Derivation (exact for powers of two; :mod:`tests.test_baselines` checks it with a counting
    implementation): the ``N`` real samples are packed into ``M = N/2`` complex ones and transformed
    by a radix-2 decimation-in-time FFT, ``(M/2)·log2(M)`` complex multiplies (every twiddle counted,
    trivial ones too); untangling the two interleaved spectra costs one complex multiply per bin
    ``k < M`` (the factor 1/2 is folded into the next linear map). A complex multiply is 4 real
    MACs, so ``4·((N/4)·log2(N/2) + N/2) = N·(log2 N + 1)``. Other sizes use the same expression
    (a mixed-radix FFT costs about the same).
    """
    if n_fft < 2:
        raise ValueError(f"n_fft must be >= 2, got {n_fft}")
    return math.ceil(n_fft * (math.log2(n_fft) + 1))


@dataclass(frozen=True)
class SpectralSettings:
    """What the MAC count of an STFT → mel → log (→ DCT) front end depends on."""
    n_fft: int
    win_length: int
    n_mels: int
    n_mfcc: int = 0          # 0: log-mel features, no DCT
    power: float = 2.0       # 2: power spectrum; 1: magnitude (adds a square root per bin)

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1


def feature_macs(settings: SpectralSettings, frames: int) -> dict[str, int]:
    """MACs of each part (:data:`PARTS`) and their ``total`` for ``frames`` frames."""
    s, f = settings, frames
    parts = {
        "window": f * s.win_length,
        "rfft": f * rfft_macs(s.n_fft),
        "power": f * s.n_freqs * (2 if s.power == 2.0 else 3),
        "mel": f * s.n_freqs * s.n_mels,
        "log": f * s.n_mels,
        "dct": f * s.n_mels * s.n_mfcc,
    }
    return {**parts, "total": sum(parts.values())}


def spectral_settings(module: nn.Module) -> SpectralSettings | None:
    """Settings of a torchaudio ``MFCC`` / ``MelSpectrogram``, or of any module that declares them in a
    ``spectral_settings`` attribute (the peers' TF-style front ends); None for anything else."""
    declared = getattr(module, "spectral_settings", None)
    if isinstance(declared, SpectralSettings):
        return declared
    kind = type(module).__name__
    if kind == "MFCC" and hasattr(module, "MelSpectrogram"):
        mel = spectral_settings(module.MelSpectrogram)
        return None if mel is None else SpectralSettings(mel.n_fft, mel.win_length, mel.n_mels, module.n_mfcc,
                                                          mel.power)
    if kind == "MelSpectrogram" and hasattr(module, "spectrogram"):
        spec = module.spectrogram
        return SpectralSettings(spec.n_fft, spec.win_length, module.n_mels, 0, float(spec.power))
    return None


def frontend_macs(module: nn.Module, output: torch.Tensor | None = None, input_samples: int = 16000) -> dict[str, Any]:
    """Feature-extraction MACs of ``module`` for one clip; ``output`` (its batch-1 output, time last)
    gives the frame count, else one forward pass on zeros is run. Empty dict if not a feature module."""
    settings = spectral_settings(module)
    if settings is None:
        return {}
    if output is None:
        with torch.no_grad():
            output = module(torch.zeros(1, input_samples))
    return feature_macs(settings, int(output.shape[-1]))
