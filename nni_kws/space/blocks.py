"""Building blocks of the KWS space, written once for both the search space and the fixed net.

As in NNI's hub spaces (``nni/nas/hub/pytorch/proxylessnas.py``), every block accepts plain ints
or NNI mutable expressions and builds ``MutableConv1d``/``MutableBatchNorm1d``; inside a frozen
context (``space.freeze`` or ``KwsSpace.frozen_factory``) those return plain ``nn.Conv1d`` and
``nn.BatchNorm1d``, so the deployed model holds only torch classes.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Union, cast

import torch
import torch.nn.functional as F
from nni.mutable import MutableExpression
from nni.nas.nn.pytorch import MutableBatchNorm1d, MutableConv1d
from torch import nn

__all__ = [
    "MaybeIntChoice", "SincConv1d", "LogCompression", "SincFrontEnd", "ConvFrontEnd", "MfccFrontEnd",
    "ConvBNReLU1d", "MBConv1d", "bake_sinc",
]

MaybeIntChoice = Union[int, MutableExpression[int]]


def _simplify(modules: Iterable[nn.Module]) -> list[nn.Module]:
    """Drop identities so the printed module tree reads like the paper's table."""
    return [m for m in modules if not isinstance(m, nn.Identity)]


class SincConv1d(nn.Module):
    """Learnable band-pass filterbank on raw audio (SincNet, Ravanelli & Bengio 2018).

    Each of the ``out_channels`` filters is the difference of two windowed sinc low-pass filters
    with learnable cut-offs, so it has 2 parameters instead of ``kernel_size``. Hand-written
    because neither torch nor torchaudio ships a SincConv. Initial bands follow the mel scale.
    """

    def __init__(self, out_channels: int, kernel_size: int = 101, stride: int = 8,
                 sample_rate: int = 16000, min_low_hz: float = 50.0, min_band_hz: float = 50.0) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"SincConv1d kernel_size must be odd, got {kernel_size}")
        self.out_channels, self.kernel_size, self.stride = out_channels, kernel_size, stride
        self.sample_rate, self.min_low_hz, self.min_band_hz = sample_rate, min_low_hz, min_band_hz
        mel = torch.linspace(self._to_mel(30.0), self._to_mel(sample_rate / 2 - min_low_hz - min_band_hz),
                             out_channels + 1)
        hz = self._to_hz(mel)
        self.low_hz = nn.Parameter(hz[:-1].unsqueeze(1))
        self.band_hz = nn.Parameter(torch.diff(hz).unsqueeze(1))
        half = kernel_size // 2
        self.register_buffer("window", torch.hamming_window(kernel_size, periodic=False), persistent=False)
        self.register_buffer("n", 2 * math.pi * torch.arange(-half, half + 1).float() / sample_rate,
                             persistent=False)

    @staticmethod
    def _to_mel(hz: float) -> float:
        return 2595 * math.log10(1 + hz / 700)

    @staticmethod
    def _to_hz(mel: torch.Tensor) -> torch.Tensor:
        return 700 * (10 ** (mel / 2595) - 1)

    def filters(self) -> torch.Tensor:
        """The current filterbank as a ``(out_channels, 1, kernel_size)`` conv weight."""
        low = self.min_low_hz + self.low_hz.abs()
        high = torch.clamp(low + self.min_band_hz + self.band_hz.abs(), self.min_low_hz, self.sample_rate / 2)
        n = self.n.unsqueeze(0)
        # 2f·sinc(2πfn) written with torch.sinc, which takes care of n = 0.
        band = 2 * high * torch.sinc(high * n / math.pi) - 2 * low * torch.sinc(low * n / math.pi)
        band = band / band.abs().amax(dim=1, keepdim=True).clamp_min(1e-8)
        return (band * self.window).unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.filters(), stride=self.stride, padding=self.kernel_size // 2)

    def to_conv1d(self) -> nn.Conv1d:
        """An equal plain ``nn.Conv1d`` (for quantizers and ONNX export)."""
        conv = nn.Conv1d(1, self.out_channels, self.kernel_size, self.stride, self.kernel_size // 2, bias=False)
        with torch.no_grad():
            conv.weight.copy_(self.filters())
        return conv.to(self.low_hz.device)

    def extra_repr(self) -> str:
        return f"1, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"


class LogCompression(nn.Module):
    """``log(1 + |x|)``: compresses the filterbank's dynamic range like a log-mel spectrogram."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # torch.log, not torch.log1p, which an earlier run measured slower on CPU; the recorded runs since see no
        # difference (benchmarks/results/search.json, log_compression_step). With |x| + 1 >= 1 both agree to
        # float32 rounding.
        return torch.log(x.abs() + 1)


class SincFrontEnd(nn.Sequential):
    """SincConv → log compression → BN → average pooling (Mittermaier et al. 2019)."""

    def __init__(self, channels: int, kernel_size: int, stride: int, pool: int) -> None:
        super().__init__(SincConv1d(channels, kernel_size, stride), LogCompression(),
                         MutableBatchNorm1d(channels), nn.AvgPool1d(pool) if pool > 1 else nn.Identity())


class ConvFrontEnd(nn.Sequential):
    """A plain strided conv on the waveform → BN → ReLU → average pooling."""

    def __init__(self, channels: int, kernel_size: int, stride: int, pool: int) -> None:
        super().__init__(*_simplify([
            ConvBNReLU1d(1, channels, kernel_size, stride),
            nn.AvgPool1d(pool) if pool > 1 else nn.Identity(),
        ]))


class MfccFrontEnd(nn.Module):
    """MFCCs (torchaudio; 40 ms window, 20 ms hop as in the ICPR code) → 1x1 conv stem to ``channels``."""

    def __init__(self, channels: int, n_mfcc: int = 40, sample_rate: int = 16000) -> None:
        super().__init__()
        import torchaudio  # local import: only MFCC spaces need it

        self.mfcc = torchaudio.transforms.MFCC(
            sample_rate, n_mfcc=n_mfcc,
            melkwargs={"n_fft": 640, "win_length": 640, "hop_length": 320, "n_mels": max(40, n_mfcc)})
        self.norm = nn.BatchNorm1d(n_mfcc)
        self.stem = ConvBNReLU1d(n_mfcc, channels, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(self.norm(self.mfcc(x).squeeze(1)))


class ConvBNReLU1d(nn.Sequential):
    """Conv1d → BN → ReLU, with 'same' padding that follows a (possibly mutable) kernel size."""

    def __init__(self, in_channels: MaybeIntChoice, out_channels: MaybeIntChoice,
                 kernel_size: MaybeIntChoice = 1, stride: MaybeIntChoice = 1, groups: MaybeIntChoice = 1,
                 activation: Callable[[], nn.Module] | None = nn.ReLU) -> None:
        padding = (kernel_size - 1) // 2
        super().__init__(*_simplify([
            MutableConv1d(cast(int, in_channels), cast(int, out_channels), cast(int, kernel_size), cast(int, stride),
                          cast(int, padding), groups=cast(int, groups), bias=False),
            MutableBatchNorm1d(cast(int, out_channels)),
            activation() if activation is not None else nn.Identity(),
        ]))


class MBConv1d(nn.Sequential):
    """Mobile inverted bottleneck on sequences (MobileNetV2 / ProxylessNAS MBConv, 1-D).

    1x1 expand (``in * expand_ratio``) → BN → ReLU → depthwise ``kernel_size`` (stride) → BN → ReLU
    → 1x1 project → BN, with an identity shortcut when stride is 1 and widths match. The expand
    conv is left out when the ratio is the constant 1, as in ProxylessNAS.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: MaybeIntChoice,
                 expand_ratio: MaybeIntChoice, stride: MaybeIntChoice = 1) -> None:
        hidden = in_channels * expand_ratio
        super().__init__(*_simplify([
            nn.Identity() if isinstance(expand_ratio, int) and expand_ratio == 1
            else ConvBNReLU1d(in_channels, hidden, 1),
            ConvBNReLU1d(hidden, hidden, kernel_size, stride, groups=hidden),
            ConvBNReLU1d(hidden, out_channels, 1, activation=None),
        ]))
        self.same_width = in_channels == out_channels

    @property
    def has_skip(self) -> bool:
        """An identity shortcut: the widths match and the depthwise conv has stride 1 (read off the conv, which
        freezing a searched stride sets; a supernet's sampled path decides in :meth:`forward`)."""
        stride = self[-2][0].stride
        return self.same_width and (stride[0] if isinstance(stride, tuple) else stride) == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return x + out if self.same_width and out.shape == x.shape else out


def bake_sinc(model: nn.Module) -> nn.Module:
    """Replace every :class:`SincConv1d` in ``model`` (in place) by an equal plain ``nn.Conv1d``."""
    for name, child in list(model.named_children()):
        if isinstance(child, SincConv1d):
            setattr(model, name, child.to_conv1d())
        else:
            bake_sinc(child)
    return model
