"""Synthesis-time signal processing (numpy, 16 kHz): synthesizer output -> 1 s clips, simulated rooms,
microphone/channel effects, speed perturbation and synthetic background noise.

These move synthesized speech away from the clean formant-synthesizer signature towards what a real
microphone records. Every function takes its randomness from a ``numpy.random.Generator`` so that a
dataset built with the same seed has the same bytes.

Rooms: a shoebox room from ``pyroomacoustics``; its image-source early reflections (order <= 8) are
exact, and the late reverberation is an exponentially decaying noise tail with the room's target RT60
(the full image-source method needs up to seconds per RIR at RT60 0.8 s; this takes milliseconds).
"""
from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from .labels import CLIP_SAMPLES, SAMPLE_RATE

__all__ = ["apply_channel", "apply_room", "colored_noise", "make_clip", "room_bank", "room_impulse_response",
           "speed_change", "synthetic_noises"]

_EARLY_ORDER = 8      # image-source reflection order simulated exactly
_MIXING_S = 0.05      # after this the tail is diffuse noise (typical mixing time of small rooms)


def room_impulse_response(rng: np.random.Generator, rt60: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A random shoebox room's impulse response with reverberation time ``rt60`` seconds (peak 1).

    Room 3-8 m x 3-8 m x 2.4-3.5 m, source and microphone at random positions at least 0.5 m from the
    walls; ``rt60 * sample_rate`` samples long (the tail has decayed by 60 dB by then).
    """
    import pyroomacoustics as pra

    dims = np.array([rng.uniform(3, 8), rng.uniform(3, 8), rng.uniform(2.4, 3.5)])
    src, mic = (rng.uniform(0.5, dims - 0.5) for _ in range(2))
    absorption, max_order = pra.inverse_sabine(rt60, dims)
    room = pra.ShoeBox(dims, fs=sample_rate, materials=pra.Material(absorption),
                       max_order=min(max_order, _EARLY_ORDER), use_rand_ism=False)
    room.add_source(src)
    room.add_microphone(mic)
    # One thread: pyroomacoustics sums the reflections in float32 per thread, so the bytes would depend on
    # the machine's core count (its default) and a cached dataset would differ between machines.
    threads = pra.constants.get("num_threads")
    pra.constants.set("num_threads", 1)
    try:
        room.compute_rir()
    finally:
        pra.constants.set("num_threads", threads)
    early = np.asarray(room.rir[0][0], dtype=np.float64)
    n = int(rt60 * sample_rate)
    t = np.arange(n) / sample_rate
    direct = int(np.argmax(np.abs(early)))
    start = direct + int(_MIXING_S * sample_rate)
    # Late tail: noise with a 60 dB decay over rt60, continuing the early part's level at ``start``.
    envelope = np.exp(-6.9 * (t - t[min(start, n - 1)]) / rt60)
    level = np.sqrt(np.mean(early[max(start - 160, 0):start] ** 2)) if start < early.size else 0.0
    level = level or np.abs(early).max() * 10 ** (-20 / 20)
    tail = rng.standard_normal(n) * envelope * level
    tail[:start] = 0
    rir = tail
    rir[:min(early.size, n, start)] += early[:min(early.size, n, start)]
    return rir / np.abs(rir).max()


@functools.lru_cache(maxsize=4)
def room_bank(seed: int, size: int = 48, rt60: tuple[float, float] = (0.2, 0.8)) -> tuple[np.ndarray, ...]:
    """``size`` room impulse responses with RT60 ~ ``U(rt60)``, made once per process (deterministic in ``seed``)."""
    rng = np.random.default_rng([seed, 11])
    return tuple(room_impulse_response(rng, float(rng.uniform(*rt60))) for _ in range(size))


def apply_room(x: np.ndarray, rir: np.ndarray, wet: float = 1.0) -> np.ndarray:
    """``x`` convolved with ``rir`` (same length as ``x``), blended ``wet`` : ``1 - wet`` with the dry signal."""
    from scipy.signal import fftconvolve

    y = fftconvolve(x, rir)[: x.size]
    y *= np.abs(x).max() / (np.abs(y).max() + 1e-12)
    return wet * y + (1 - wet) * x


def speed_change(x: np.ndarray, factor: float) -> np.ndarray:
    """``x`` played ``factor`` times faster by resampling (pitch and formants scale by ``factor``).

    The factor is rounded to a ratio of integers up to 40, so a 1 kHz tone comes out at
    ``1 kHz * factor`` within 2.5 %.
    """
    from fractions import Fraction

    from scipy.signal import resample_poly

    ratio = Fraction(factor).limit_denominator(40)
    return resample_poly(x, ratio.denominator, ratio.numerator) if ratio != 1 else x.copy()


def apply_channel(x: np.ndarray, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, dict]:
    """A random microphone/transmission channel applied to ``x``; returns the signal and what was applied.

    Always a band limit (4th-order Butterworth high-pass at 50-400 Hz and low-pass at 2.5-7.5 kHz) and a
    gain of -6..+6 dB; with probability 0.25 each: hard clipping (the peak driven 1.5-3x past full scale),
    8-bit mu-law companding (a codec's quantization) or a telephone band (through 8 kHz and back).
    """
    from scipy.signal import butter, resample_poly, sosfilt

    low, high = float(rng.uniform(50, 400)), float(rng.uniform(2500, 7500))
    x = sosfilt(butter(4, [low, high], btype="bandpass", fs=sample_rate, output="sos"), x)
    gain_db = float(rng.uniform(-6, 6))
    x = x * 10 ** (gain_db / 20)
    applied: dict = {"band_hz": (round(low), round(high)), "gain_db": round(gain_db, 2)}
    peak = np.abs(x).max() + 1e-12
    if rng.random() < 0.25:
        drive = float(rng.uniform(1.5, 3.0))
        x = np.clip(x / peak * drive, -1, 1) * peak
        applied["clip_drive"] = round(drive, 2)
    if rng.random() < 0.25:
        mu = 255.0
        y = np.sign(x / peak) * np.log1p(mu * np.abs(x / peak)) / math.log1p(mu)
        y = np.round(y * 127) / 127
        x = np.sign(y) * ((1 + mu) ** np.abs(y) - 1) / mu * peak
        applied["mu_law"] = True
    if rng.random() < 0.25:
        x = resample_poly(resample_poly(x, 1, 2), 2, 1)[: x.size]
        applied["telephone"] = True
    return x, applied


# --------------------------------------------------------------------------------------------
# Synthesizer output -> Speech-Commands-like clips
# --------------------------------------------------------------------------------------------
def _trim(x: np.ndarray, threshold: float = 0.02, margin: int = 110) -> np.ndarray:
    """Drop leading/trailing samples quieter than ``threshold`` x peak (keeping ``margin`` samples)."""
    loud = np.flatnonzero(np.abs(x) > threshold * np.abs(x).max()) if x.size else []
    if len(loud) == 0:
        return x[:0]
    return x[max(loud[0] - margin, 0): loud[-1] + margin + 1]


def colored_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown), unit std."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    y = np.fft.irfft(spec / f ** (exponent / 2), n)
    y -= y.mean()
    return y / (y.std() + 1e-12)


def _room(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """Faint random coloration: a small synthetic room echo, a microphone tilt and a noise floor."""
    from scipy.signal import fftconvolve, lfilter

    if rng.random() < 0.5:  # exponentially decaying noise = a crude room impulse response
        rt60 = rng.uniform(0.05, 0.3)
        t = np.arange(int(rt60 * SAMPLE_RATE)) / SAMPLE_RATE
        rir = rng.standard_normal(t.size) * np.exp(-6.9 * t / rt60)
        wet = fftconvolve(x, rir)[: x.size]
        x = x + rng.uniform(0.05, 0.3) * wet * (np.abs(x).max() / (np.abs(wet).max() + 1e-12))
    if rng.random() < 0.5:  # first-order low- or high-pass blend: cheap/boomy microphones
        a = rng.uniform(0.3, 0.9)
        low = lfilter([1 - a], [1, -a], x)
        x = low if rng.random() < 0.5 else x - rng.uniform(0.3, 0.8) * low
    # a noise floor 30-60 dB below the speech peak: real recordings are never digitally silent
    noise = colored_noise(rng, x.size, float(rng.choice([0.0, 1.0, 2.0])))
    return x + np.abs(x).max() * 10 ** (-rng.uniform(30, 60) / 20) * noise


_MAX_WORD = int(0.95 * CLIP_SAMPLES)


def _ratio(rate: int) -> tuple[int, int]:
    g = math.gcd(SAMPLE_RATE, rate)
    return SAMPLE_RATE // g, rate // g


@functools.lru_cache(maxsize=4)
def _resampling_filter(rate: int) -> np.ndarray:
    """The FIR filter ``resample_poly`` would design for this ratio, designed once instead of per clip."""
    from scipy.signal import firwin

    n = max(_ratio(rate))
    return firwin(20 * n + 1, 1.0 / n, window=("kaiser", 5.0))


def make_clip(raw: np.ndarray, rate: int, rng: np.random.Generator,
               effects: dict[str, Any] | None = None) -> np.ndarray:
    """Synthesizer int16 samples -> one second of 16 kHz int16: trimmed, resampled, placed, colored, normalized.

    ``effects`` (the data engine) adds, with its own generator ``effects["rng"]`` so that the legacy draws
    stay put: a speed change by ``U(effects["speed"])``, a simulated room with probability
    ``effects["room"]`` (from the bank ``effects["rooms"]``) and channel effects with ``effects["channel"]``.
    """
    from scipy.signal import resample, resample_poly

    x = _trim(raw.astype(np.float64) / 32768.0)
    if x.size == 0:
        raise RuntimeError("the synthesizer produced only silence")
    if rate != SAMPLE_RATE:
        up, down = _ratio(rate)
        x = resample_poly(x, up, down, window=_resampling_filter(rate))
    fx = effects or {}
    fx_rng: np.random.Generator | None = fx.get("rng")
    if fx_rng is not None and fx.get("speed"):
        x = speed_change(x, float(fx_rng.uniform(*fx["speed"])))
    if x.size > _MAX_WORD:  # rare (slow variant, long word): speed up to fit, never cut the word
        x = resample(x, _MAX_WORD)
    fade = np.minimum(1.0, np.minimum(np.arange(x.size), np.arange(x.size)[::-1]) / 80)  # 5 ms: no clicks
    x = x * fade
    clip = np.zeros(CLIP_SAMPLES)
    start = int(rng.integers(0, CLIP_SAMPLES - x.size + 1))
    clip[start:start + x.size] = x
    if fx_rng is not None and fx_rng.random() < fx.get("room", 0.0):
        rooms = fx["rooms"]
        clip = apply_room(clip, rooms[int(fx_rng.integers(len(rooms)))], wet=float(fx_rng.uniform(0.5, 1.0)))
    clip = _room(rng, clip)
    if fx_rng is not None and fx_rng.random() < fx.get("channel", 0.0):
        clip = apply_channel(clip, fx_rng)[0]
    clip *= rng.uniform(0.25, 0.95) / (np.abs(clip).max() + 1e-12)
    return np.clip(np.round(clip * 32767), -32768, 32767).astype(np.int16)


def synthetic_noises(seed: int, seconds: float) -> dict[str, np.ndarray]:
    """A few synthetic noise files for ``_background_noise_`` (source of ``_silence_`` and mixing)."""
    n = int(seconds * SAMPLE_RATE)
    rng = np.random.default_rng([seed, 3])
    t = np.arange(n) / SAMPLE_RATE
    hum = sum(np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in (1, 2, 3, 5))
    hum = hum / np.abs(hum).max() + 0.05 * colored_noise(rng, n, 1.0)
    noises = {
        "white_noise": colored_noise(rng, n, 0.0),
        "pink_noise": colored_noise(rng, n, 1.0),
        "brown_noise": colored_noise(rng, n, 2.0),
        "hum": hum,
    }
    return {k: np.round(v * (0.5 / np.abs(v).max()) * 32767).astype(np.int16) for k, v in noises.items()}
