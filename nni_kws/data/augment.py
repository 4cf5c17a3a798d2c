"""Training-time waveform augmentation, each part switchable (:class:`TrainAugment`).

Everything works on the raw waveform ``Tensor[1, n]`` so it serves every front end (MFCC, SincConv,
learned conv): time masking zeroes spans of samples and frequency masking is a band-stop filter (FFT
bins of a random band set to zero), the waveform-domain versions of SpecAugment's masks. Background
noise is mixed either at ``U(0, noise_volume)`` times the file's own level (the Speech Commands /
TensorFlow recipe) or, with ``noise_snr_db``, at a random signal-to-noise ratio.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch.nn.functional as F

from .labels import SAMPLE_RATE

__all__ = ["TrainAugment", "band_stop", "mix_at_snr", "rms", "speed_perturb", "time_mask"]


@dataclasses.dataclass(frozen=True)
class TrainAugment:
    """Which training augmentations run, and how strongly (defaults: the Speech Commands recipe).

    ``noise_snr_db=(lo, hi)`` mixes noise at ``U(lo, hi)`` dB SNR instead of at ``U(0, noise_volume)``;
    ``speed=(lo, hi)`` resamples the clip by a factor ``U(lo, hi)`` (tempo and pitch/formants together);
    ``gain_db`` scales by ``U(lo, hi)`` dB; ``time_masks`` spans of up to ``time_mask_ms`` are zeroed and
    ``freq_masks`` bands of up to ``freq_mask_hz`` are removed, each with probability ``mask_prob``.
    """

    time_shift_ms: float = 100
    noise_prob: float = 0.8
    noise_volume: float = 0.1
    noise_snr_db: tuple[float, float] | None = None
    speed: tuple[float, float] | None = None
    gain_db: tuple[float, float] | None = None
    time_masks: int = 0
    time_mask_ms: float = 100
    freq_masks: int = 0
    freq_mask_hz: float = 1000
    mask_prob: float = 0.5

    def __post_init__(self) -> None:
        for name in ("noise_snr_db", "speed", "gain_db"):
            value = getattr(self, name)
            if value is not None:
                if len(value) != 2 or value[0] > value[1]:
                    raise ValueError(f"{name} must be a (low, high) pair, got {value!r}")
                object.__setattr__(self, name, (float(value[0]), float(value[1])))
        if self.speed is not None and self.speed[0] <= 0:
            raise ValueError(f"speed factors must be positive, got {self.speed}")
        if not 0 <= self.noise_prob <= 1 or not 0 <= self.mask_prob <= 1:
            raise ValueError("noise_prob and mask_prob must be in [0, 1]")

    @classmethod
    def strong(cls) -> TrainAugment:
        """The sim-to-real recipe: noise at 0-20 dB SNR, speed 0.9-1.1, gain, two time and two band masks."""
        return cls(noise_snr_db=(0.0, 20.0), speed=(0.9, 1.1), gain_db=(-10.0, 6.0), time_masks=2, freq_masks=2)

    def apply(self, x: torch.Tensor, g: torch.Generator,
              noise: Callable[[torch.Generator], torch.Tensor | None]) -> torch.Tensor:
        """Augment one clip ``x[1, n]`` with draws from ``g``; ``noise(g)`` gives a noise slice or None."""
        n = x.shape[-1]
        if self.speed is not None:
            x = speed_perturb(x, _uniform(g, *self.speed), n)
        shift = int(round(self.time_shift_ms * SAMPLE_RATE / 1000))
        k = int(torch.randint(-shift, shift + 1, (), generator=g))
        x = F.pad(x, (max(k, 0), max(-k, 0)))[..., max(-k, 0):max(-k, 0) + n]
        if self.gain_db is not None:
            x = x * 10 ** (_uniform(g, *self.gain_db) / 20)
        if float(torch.rand((), generator=g)) < self.noise_prob:
            z = noise(g)
            if z is not None:
                if self.noise_snr_db is None:
                    x = x + _uniform(g, 0.0, self.noise_volume) * z
                else:
                    x = mix_at_snr(x, z, _uniform(g, *self.noise_snr_db))
        for _ in range(self.time_masks):
            if float(torch.rand((), generator=g)) < self.mask_prob:
                width = int(_uniform(g, 0, self.time_mask_ms) * SAMPLE_RATE / 1000)
                x = time_mask(x, int(torch.randint(n - width + 1, (), generator=g)), width)
        for _ in range(self.freq_masks):
            if float(torch.rand((), generator=g)) < self.mask_prob:
                width = _uniform(g, 0, self.freq_mask_hz)
                x = band_stop(x, _uniform(g, 0, SAMPLE_RATE / 2 - width), width)
        return x.clamp(-1.0, 1.0)


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def rms(x: torch.Tensor) -> float:
    """Root mean square of ``x``."""
    return float(x.double().pow(2).mean().sqrt())


def mix_at_snr(x: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    """``x`` plus ``noise`` scaled so that ``20 log10(rms(x) / rms(scaled noise)) == snr_db``.

    A silent ``x`` or ``noise`` is returned / added unchanged (no SNR is defined).
    """
    sx, sn = rms(x), rms(noise)
    if sx == 0 or sn == 0:
        return x + noise if sx == 0 else x
    return x + noise * (sx / (sn * 10 ** (snr_db / 20)))


def time_mask(x: torch.Tensor, start: int, width: int) -> torch.Tensor:
    """``x`` with samples ``[start, start + width)`` set to zero (a copy)."""
    x = x.clone()
    x[..., start:start + width] = 0
    return x


def band_stop(x: torch.Tensor, low_hz: float, width_hz: float, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """``x`` without its content in ``[low_hz, low_hz + width_hz]``: those FFT bins are zeroed."""
    n = x.shape[-1]
    spec = torch.fft.rfft(x)
    freqs = torch.fft.rfftfreq(n, 1 / sample_rate)
    spec[..., (freqs >= low_hz) & (freqs <= low_hz + width_hz)] = 0
    return torch.fft.irfft(spec, n)


def speed_perturb(x: torch.Tensor, factor: float, num_samples: int | None = None) -> torch.Tensor:
    """Play ``x`` ``factor`` times faster (linear-interpolation resampling: pitch and formants scale too).

    The result is zero-padded or centre-cropped to ``num_samples`` (default: the input length).
    """
    n = x.shape[-1]
    out = F.interpolate(x.reshape(1, 1, n), size=max(1, int(round(n / factor))), mode="linear",
                        align_corners=True).reshape(*x.shape[:-1], -1)
    num_samples = n if num_samples is None else num_samples
    m = out.shape[-1]
    if m < num_samples:
        left = (num_samples - m) // 2
        return F.pad(out, (left, num_samples - m - left))
    start = (m - num_samples) // 2
    return out[..., start:start + num_samples]


