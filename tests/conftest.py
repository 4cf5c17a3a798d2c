"""Shared pytest fixtures: a tiny synthetic Speech Commands dataset and the real v2 test folder."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Iterable

import nni
import numpy as np
import pytest
import soundfile as sf
import torch

from nni_kws.data.labels import BACKGROUND_NOISE_DIR, KEYWORDS, SAMPLE_RATE

# One intra-op thread: on a 2-core machine shared with NNI trial processes, two threads fight
# (the search tests took 95 s with two threads and 17 s with one).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _fresh_nni_trial_state():
    """NNI keeps the current trial's parameters in module globals (``nni.trial._params``); a test
    that ran a trial in-process must not make the next one look like it runs inside a trial."""
    yield
    nni.trial._params = None
    nni.trial._intermediate_seq = 0


TINY_UNKNOWN_WORDS = ("bed", "cat", "dog")
TINY_SPLIT = ("training", "training", "validation", "testing")  # subset of speaker 0..3


def _speaker_id(s: int) -> str:
    return hashlib.md5(f"speaker{s}".encode()).hexdigest()[:8]


def _word_clip(w: int, s: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """0.5 s of word ``w``: a chirp from a word-specific frequency up or down by 1.5x (plus its 2nd
    harmonic) under a Hann envelope, pitch-scaled per speaker ``s``, at a random onset and gain,
    over faint noise. Neighbouring words differ by 1.2x in frequency, speakers by at most ±8%."""
    t = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE
    f0 = 250 * 1.2 ** w * (0.92, 0.97, 1.03, 1.08)[s % 4]
    f1 = f0 * (1.5 if w % 2 == 0 else 1 / 1.5)
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2)  # linear chirp over 0.5 s
    word = (np.sin(phase) + 0.3 * np.sin(2 * phase)) * np.hanning(t.size) * rng.uniform(0.3, 0.6)
    x = rng.normal(0, 0.01, SAMPLE_RATE)
    start = rng.integers(int(0.1 * SAMPLE_RATE), int(0.4 * SAMPLE_RATE))
    x[start:start + t.size] += word
    return np.clip(x, -1, 1).astype(np.float32)


def write_tiny_gsc(root: Path, words: tuple[str, ...] = KEYWORDS + TINY_UNKNOWN_WORDS,
                   clips_per_speaker: tuple[int, ...] = (2, 2, 1, 1), seed: int = 0) -> Path:
    """Write a tiny Speech Commands copy in the official layout under ``root`` and return ``root``.

    ``clips_per_speaker[s]`` clips of each word for speaker ``s``; speaker ``s`` belongs to subset
    ``TINY_SPLIT[s % 4]`` (speaker-disjoint lists as in the real dataset).
    """
    rng = np.random.default_rng(seed)
    lists: dict[str, list[str]] = {"validation": [], "testing": []}
    for w, word in enumerate(words):
        (root / word).mkdir(parents=True, exist_ok=True)
        for s, count in enumerate(clips_per_speaker):
            for n in range(count):
                rel = f"{word}/{_speaker_id(s)}_nohash_{n}.wav"
                sf.write(root / rel, _word_clip(w, s, n, rng), SAMPLE_RATE, subtype="PCM_16")
                if TINY_SPLIT[s % 4] in lists:
                    lists[TINY_SPLIT[s % 4]].append(rel)
    for name, rels in lists.items():
        (root / f"{name}_list.txt").write_text("".join(r + "\n" for r in rels))
    noise_dir = root / BACKGROUND_NOISE_DIR
    noise_dir.mkdir(exist_ok=True)
    white = rng.normal(0, 0.3, 3 * SAMPLE_RATE)
    brown = np.cumsum(rng.normal(0, 1, 3 * SAMPLE_RATE))
    brown = 0.5 * (brown - brown.mean()) / np.abs(brown - brown.mean()).max()
    sf.write(noise_dir / "white_noise.wav", np.clip(white, -1, 1).astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
    sf.write(noise_dir / "brown_noise.wav", brown.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
    return root


@pytest.fixture(scope="session")
def tiny_gsc(tmp_path_factory) -> Path:
    """Root of a tiny synthetic Google Speech Commands copy in the official layout (built once per session).

    Contents (deterministic, 16 kHz mono 16-bit WAVs of exactly 1 s, written in well under a second):

    - ``<word>/<speaker>_nohash_<n>.wav`` for the 10 keywords and 3 unknown words (bed, cat, dog), from
      4 speakers: speakers 0 and 1 have 2 clips per word (training), speaker 2 one clip per word
      (listed in ``validation_list.txt``), speaker 3 one clip per word (``testing_list.txt``);
      i.e. 6 clips per word, 78 in all. Each clip is a word-specific chirp (learnable from the
      spectrum), pitch-shifted per speaker, at a random onset, over faint noise.
    - ``_background_noise_/white_noise.wav`` and ``brown_noise.wav``: 3 s each.

    With default settings ``SpeechCommands(tiny_gsc, 'training')`` has 40 keyword + 5 unknown + 5
    silence items; validation and testing have 10 + 1 + 1 each. Treat it as read-only (it is shared
    by the whole session); copy it (``shutil.copytree``) to modify it, or call ``write_tiny_gsc``.
    """
    return write_tiny_gsc(tmp_path_factory.mktemp("tiny_gsc"))


@pytest.fixture(scope="session")
def real_test_root() -> Path:
    """The real pre-split Speech Commands v2 test folder (4890 clips); skips the test if absent."""
    from nni_kws.data.paths import REAL_TEST_DIR, SHARED_DATA_ENV, shared_data_dir

    root = shared_data_dir(REAL_TEST_DIR)
    if root is None:
        pytest.skip(f"real Speech Commands test folder not found (set {SHARED_DATA_ENV})")
    return root


def _count_accuracy(model: torch.nn.Module, clips: Iterable[tuple[torch.Tensor, int]]) -> float:
    hits = total = 0
    model = model.eval()
    with torch.no_grad():
        for x, y in clips:
            hits += int(model(x.unsqueeze(0)).argmax(1)) == int(y)
            total += 1
    return hits / total


@pytest.fixture(scope="session")
def count_accuracy() -> Callable[[torch.nn.Module, Iterable[tuple[torch.Tensor, int]]], float]:
    """``count_accuracy(model, clips)``: top-1 accuracy over ``(waveform [1, samples], label)`` pairs (a dataset)
    counted one clip per forward pass in eval mode, apart from the pipeline's loaders and ``training.accuracy``:
    the independent count that a reported accuracy is checked against."""
    return _count_accuracy


@pytest.fixture(scope="session")
def tiny_test_clips(tiny_gsc: Path):
    """The test split of ``tiny_gsc`` as the pipeline reads it (``(waveform, label)`` pairs), for ``count_accuracy``."""
    from nni_kws.data.datamodule import SpeechCommandsDataModule

    return SpeechCommandsDataModule(tiny_gsc).dataset("testing")
