"""An ONNX-exportable stand-in for torchaudio's ``Spectrogram``, swapped in only for the ONNX export.

``torch.onnx`` cannot export ``torch.stft``'s complex output ("STFT does not currently support complex types"),
so a model with an MFCC or log-mel front end (``KwsSpace(frontend='mfcc')``, DS-CNN, TC-ResNet) could be
trained and quantized but not exported. Written by hand because neither torchaudio nor torch offers an
exportable STFT: the power spectrum as a strided convolution with the windowed DFT basis (the real and
imaginary parts), the same numbers up to float rounding; the export's agreement check measures the difference.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DftSpectrogram", "exportable"]


class DftSpectrogram(nn.Module):
    """``torchaudio.transforms.Spectrogram`` (a real power, one-sided) as ``conv1d`` with the windowed DFT basis."""

    def __init__(self, spectrogram: nn.Module) -> None:
        super().__init__()
        s = spectrogram
        if s.power is None or not s.onesided:
            raise ValueError("only one-sided power spectrograms (power not None) have an exportable form")
        n_fft, win_length = s.n_fft, s.win_length
        left = (n_fft - win_length) // 2  # torch.stft centres a shorter window in the frame
        window = F.pad(s.window.detach().float(), (left, n_fft - win_length - left))
        if s.normalized in (True, "window"):
            window = window / s.window.pow(2).sum().sqrt()
        elif s.normalized == "frame_length":
            window = window / math.sqrt(n_fft)
        angle = 2 * math.pi * torch.outer(torch.arange(n_fft // 2 + 1.0), torch.arange(float(n_fft))) / n_fft
        self.register_buffer("basis", torch.cat([window * torch.cos(angle), -window * torch.sin(angle)]).unsqueeze(1))
        self.n_fft, self.hop_length, self.pad, self.power = n_fft, s.hop_length, s.pad, float(s.power)
        self.center, self.pad_mode = s.center, s.pad_mode

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        shape = waveform.shape
        x = waveform.reshape(-1, 1, shape[-1])
        if self.pad > 0:
            x = F.pad(x, (self.pad, self.pad))
        if self.center:
            x = F.pad(x, (self.n_fft // 2, self.n_fft // 2), mode=self.pad_mode)
        real, imag = F.conv1d(x, self.basis, stride=self.hop_length).chunk(2, dim=1)
        power = real.square() + imag.square()
        if self.power != 2.0:
            power = power.pow(self.power / 2)
        return power.reshape(*shape[:-1], *power.shape[-2:])


def exportable(model: nn.Module) -> nn.Module:
    """``model``, or a copy of it with every torchaudio ``Spectrogram`` replaced by a :class:`DftSpectrogram`."""
    import torchaudio

    if not any(isinstance(m, torchaudio.transforms.Spectrogram) for m in model.modules()):
        return model
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, torchaudio.transforms.Spectrogram):
                setattr(parent, name, DftSpectrogram(child))
    return model
