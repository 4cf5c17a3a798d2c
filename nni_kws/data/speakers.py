"""Synthetic speakers (espeak and flite voice configurations) and their speaker-disjoint split."""
from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np

from .flite import FLITE_VOICES

__all__ = ["espeak_speakers", "flite_speakers", "split_speakers", "voice_config"]


def _speaker_id(engine: str, seed: int, i: int) -> str:
    key = f"nni-kws-synth:{seed}:{i}" if engine == "espeak" else f"nni-kws-synth:{engine}:{seed}:{i}"
    return hashlib.sha1(key.encode()).hexdigest()[:8]


def espeak_speakers(n: int, seed: int, voices: Sequence[str], variants: Sequence[str]) -> list[dict[str, Any]]:
    """``n`` espeak speakers: accent x variant pairs drawn without replacement (cycled when ``n`` is larger),
    each with its own pitch (20-80), pitch range (20-90), rate (130-220 wpm) and word gap (0-8, in 10 ms).

    Speaker ``i`` depends only on ``(seed, i)`` and the voice lists, so more speakers extend a set.
    """
    pairs = [(v, var) for v in voices for var in ("", *variants)]
    order = np.random.default_rng([seed, 0]).permutation(len(pairs))
    out = []
    for i in range(n):
        voice, variant = pairs[order[i % len(pairs)]]
        rng = np.random.default_rng([seed, 1, i])
        gap = int(np.random.default_rng([seed, 4, i]).integers(0, 9))  # own stream: the older draws stay put
        out.append(dict(engine="espeak", id=_speaker_id("espeak", seed, i),
                        voice=voice + (f"+{variant}" if variant else ""), pitch=int(rng.integers(20, 81)),
                        range=int(rng.integers(20, 91)), rate=int(rng.integers(130, 221)), gap=gap))
    return out


def flite_speakers(n: int, seed: int, voices: Sequence[str]) -> list[dict[str, Any]]:
    """``n`` flite speakers: a voice (cycled), a duration stretch (0.8-1.3) and an F0 mean and spread."""
    out = []
    for i in range(n):
        voice = voices[i % len(voices)]
        rng = np.random.default_rng([seed, 6, i])
        lo, hi = FLITE_VOICES[voice]
        out.append(dict(engine="flite", id=_speaker_id("flite", seed, i), voice=voice,
                        stretch=round(float(rng.uniform(0.8, 1.3)), 2), f0=int(rng.integers(lo, hi + 1)),
                        f0_std=int(rng.integers(5, 31))))
    return out


def voice_config(speaker: dict[str, Any]) -> tuple:
    """What makes a speaker's voice (its settings without its id): distinct speakers have distinct configs."""
    return tuple(sorted((k, v) for k, v in speaker.items() if k not in ("id", "split")))


def split_speakers(speaker_ids: Sequence[str], val_fraction: float, test_fraction: float) -> dict[str, str]:
    """Speaker -> 'training'/'validation'/'testing', speaker-disjoint, from a hash of the speaker id.

    Like Speech Commands' hash split, a speaker's split follows from its id hash; ranking the
    hashes (instead of thresholding them) gives exact fractions and at least one validation and
    one testing speaker whenever the fraction is > 0, which matters for tiny datasets.
    """
    n = len(speaker_ids)
    ranked = sorted(speaker_ids, key=lambda s: hashlib.sha1(f"split:{s}".encode()).hexdigest())
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    if n_val + n_test >= n and n_val + n_test > 0:
        raise ValueError(f"{n} speakers are too few for validation and testing splits plus training")
    return {s: "validation" if i < n_val else "testing" if i < n_val + n_test else "training"
            for i, s in enumerate(ranked)}
