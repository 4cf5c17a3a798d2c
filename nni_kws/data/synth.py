"""The offline default dataset: Speech-Commands-like clips synthesized with espeak-ng.

Real Speech Commands needs a 2 GB download; this module makes a small dataset in the same layout
(``<word>/<speaker>_nohash_<n>.wav``, ``validation_list.txt``, ``testing_list.txt``,
``_background_noise_/``) from nothing but the ``espeakng-loader`` wheel, so the demo and the tests
run offline. A "speaker" is an English accent (``en-us``, ``en-gb-scotland``, ...) x an espeak voice
variant (``m3``, ``f2``, ``klatt``, ...) x pitch, pitch range and speaking rate.

Reproducibility: libespeak-ng keeps static state between
utterances, even across ``espeak_Terminate``/``espeak_Initialize``, so one word's samples depend on
what the process said before. Each dataset is therefore synthesized in a fresh child process that
says the same utterances in the same order: the same seed gives byte-identical files.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import logging
import math
import os
import shutil
import time
import zlib
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .espeak import ENGLISH_VOICES, Espeak, espeak_data_path, espeak_voice_lists, speak_all
from .labels import BACKGROUND_NOISE_DIR, CLIP_SAMPLES, KEYWORDS, SAMPLE_RATE, UNKNOWN_WORDS

__all__ = [
    "DEFAULT_SPEAKERS", "ENGLISH_VOICES", "Espeak", "dataset_fingerprint", "default_dataset_dir",
    "ensure_default_dataset", "synthesize_dataset",
]

log = logging.getLogger(__name__)

#: Bump when the synthesis recipe changes: part of the cache key, so old caches are not reused.
SYNTH_VERSION = 1
#: Default number of speakers: 35 words x 100 speakers = 3500 clips (115 MB), ~14 s of CPU (one core busy).
DEFAULT_SPEAKERS = 100
MANIFEST = "manifest.json"
_FORMAT = "nni-kws-synth"
_DEFAULTS: dict[str, Any] = dict(
    speakers=DEFAULT_SPEAKERS, seed=0, words=KEYWORDS + UNKNOWN_WORDS, clips_per_speaker=1,
    val_fraction=0.1, test_fraction=0.1, noise_seconds=30,
)


# --------------------------------------------------------------------------------------------
# Turning espeak output into Speech-Commands-like clips
# --------------------------------------------------------------------------------------------
def _trim(x: np.ndarray, threshold: float = 0.02, margin: int = 110) -> np.ndarray:
    """Drop leading/trailing samples quieter than ``threshold`` x peak (keeping ``margin`` samples)."""
    loud = np.flatnonzero(np.abs(x) > threshold * np.abs(x).max()) if x.size else []
    if len(loud) == 0:
        return x[:0]
    return x[max(loud[0] - margin, 0): loud[-1] + margin + 1]


def _colored_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
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
    noise = _colored_noise(rng, x.size, float(rng.choice([0.0, 1.0, 2.0])))
    return x + np.abs(x).max() * 10 ** (-rng.uniform(30, 60) / 20) * noise


_MAX_WORD = int(0.95 * CLIP_SAMPLES)


def _ratio(espeak_rate: int) -> tuple[int, int]:
    g = math.gcd(SAMPLE_RATE, espeak_rate)
    return SAMPLE_RATE // g, espeak_rate // g


@functools.lru_cache(maxsize=4)
def _resampling_filter(espeak_rate: int) -> np.ndarray:
    """The FIR filter ``resample_poly`` would design for this ratio, designed once instead of per clip."""
    from scipy.signal import firwin

    n = max(_ratio(espeak_rate))
    return firwin(20 * n + 1, 1.0 / n, window=("kaiser", 5.0))


def _make_clip(raw: np.ndarray, espeak_rate: int, rng: np.random.Generator) -> np.ndarray:
    """espeak int16 samples -> one second of 16 kHz int16: trimmed, resampled, placed, colored, normalized."""
    from scipy.signal import resample, resample_poly

    x = _trim(raw.astype(np.float64) / 32768.0)
    if x.size == 0:
        raise RuntimeError("espeak produced only silence")
    up, down = _ratio(espeak_rate)
    x = resample_poly(x, up, down, window=_resampling_filter(espeak_rate))
    if x.size > _MAX_WORD:  # rare (slow variant, long word): speed up to fit, never cut the word
        x = resample(x, _MAX_WORD)
    fade = np.minimum(1.0, np.minimum(np.arange(x.size), np.arange(x.size)[::-1]) / 80)  # 5 ms: no clicks
    x = x * fade
    clip = np.zeros(CLIP_SAMPLES)
    start = int(rng.integers(0, CLIP_SAMPLES - x.size + 1))
    clip[start:start + x.size] = x
    clip = _room(rng, clip)
    clip *= rng.uniform(0.25, 0.95) / (np.abs(clip).max() + 1e-12)
    return np.clip(np.round(clip * 32767), -32768, 32767).astype(np.int16)


def _background_noises(seed: int, seconds: float) -> dict[str, np.ndarray]:
    """A few synthetic noise files for ``_background_noise_`` (source of ``_silence_`` and mixing)."""
    n = int(seconds * SAMPLE_RATE)
    rng = np.random.default_rng([seed, 3])
    t = np.arange(n) / SAMPLE_RATE
    hum = sum(np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in (1, 2, 3, 5))
    hum = hum / np.abs(hum).max() + 0.05 * _colored_noise(rng, n, 1.0)
    noises = {
        "white_noise": _colored_noise(rng, n, 0.0),
        "pink_noise": _colored_noise(rng, n, 1.0),
        "brown_noise": _colored_noise(rng, n, 2.0),
        "hum": hum,
    }
    return {k: np.round(v * (0.5 / np.abs(v).max()) * 32767).astype(np.int16) for k, v in noises.items()}


def _wav_bytes(x: np.ndarray) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, x, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Speakers, splits, plan
# --------------------------------------------------------------------------------------------
def _speakers(n: int, seed: int, voices: Sequence[str], variants: Sequence[str]) -> list[dict[str, Any]]:
    """``n`` distinct speakers: accent x variant pairs drawn without replacement, random pitch/rate.

    Speaker ``i`` depends only on ``(seed, i)`` and the voice lists, so more speakers extend a set.
    """
    pairs = [(v, var) for v in voices for var in ("", *variants)]
    order = np.random.default_rng([seed, 0]).permutation(len(pairs))
    out = []
    for i in range(n):
        voice, variant = pairs[order[i % len(pairs)]]
        rng = np.random.default_rng([seed, 1, i])
        sid = hashlib.sha1(f"nni-kws-synth:{seed}:{i}".encode()).hexdigest()[:8]
        out.append(dict(id=sid, voice=voice + (f"+{variant}" if variant else ""), pitch=int(rng.integers(20, 81)),
                        range=int(rng.integers(20, 91)), rate=int(rng.integers(130, 221))))
    if len({s["id"] for s in out}) != n:  # 8 hex digits: only with absurd speaker counts
        raise ValueError(f"speaker-id collision with {n} speakers; use fewer")
    return out


def _split(speaker_ids: Sequence[str], val_fraction: float, test_fraction: float) -> dict[str, str]:
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


def _params(**params: Any) -> dict[str, Any]:
    """Validate ``params`` and fill defaults: the dataset's identity (cache key)."""
    unknown = set(params) - set(_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown dataset parameters: {sorted(unknown)}")
    p = {**_DEFAULTS, **params}
    words = [p["words"]] if isinstance(p["words"], str) else list(p["words"])
    if not words or len(set(words)) != len(words) or any(not w or w.startswith(("_", ".")) or "/" in w for w in words):
        raise ValueError(f"words must be distinct non-empty names not starting with '_': {words}")
    if int(p["speakers"]) < 1 or int(p["clips_per_speaker"]) < 1:
        raise ValueError("speakers and clips_per_speaker must be >= 1")
    if not (0 <= p["val_fraction"] < 1 and 0 <= p["test_fraction"] < 1) or p["noise_seconds"] <= 0:
        raise ValueError("need 0 <= val_fraction, test_fraction < 1 and noise_seconds > 0")
    return dict(speakers=int(p["speakers"]), seed=int(p["seed"]), words=words,
                clips_per_speaker=int(p["clips_per_speaker"]), val_fraction=float(p["val_fraction"]),
                test_fraction=float(p["test_fraction"]), noise_seconds=float(p["noise_seconds"]),
                synth_version=SYNTH_VERSION)


def _fingerprint(hashes: dict[str, str]) -> str:
    return hashlib.sha256("".join(f"{rel} {hashes[rel]}\n" for rel in sorted(hashes)).encode()).hexdigest()


def dataset_fingerprint(root: str | Path) -> str:
    """SHA-256 over every file's relative path and content (except ``manifest.json``), as in the manifest."""
    root = Path(root)
    return _fingerprint({p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                         for p in root.rglob("*") if p.is_file() and p.relative_to(root).as_posix() != MANIFEST})


def _params_hash(params: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------
def default_dataset_dir(**params: Any) -> Path:
    """``$NNI_KWS_DATA`` if set, else ``~/.cache/nni-kws/synth-<hash of the parameters>``."""
    env = os.environ.get("NNI_KWS_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "nni-kws" / f"synth-{_params_hash(_params(**params))}"


def ensure_default_dataset(*, progress: bool = True, **params: Any) -> Path:
    """Return the default dataset folder, synthesizing it first if missing.

    A folder named by ``$NNI_KWS_DATA`` that already holds a dataset is used as it is (real Speech
    Commands, or synthesized with other parameters), so users can point the demo at their data.
    """
    root = default_dataset_dir(**params)
    if os.environ.get("NNI_KWS_DATA") and (root / "testing_list.txt").is_file():
        manifest = root / MANIFEST
        if manifest.is_file() and json.loads(manifest.read_text()).get("params") != _params(**params):
            log.info("using %s from $NNI_KWS_DATA (synthesized with other parameters)", root)
        return root
    return _synthesize(root, params, progress)[0]


def _check_existing(out: Path, params: dict[str, Any]) -> bool:
    """True if ``out`` already holds this dataset; raise if it holds anything else."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise ValueError(f"{out} exists and is not a directory")
    manifest = out / MANIFEST
    if manifest.is_file():
        try:
            found = json.loads(manifest.read_text()).get("params")
        except ValueError:
            found = None
        if found == params:
            return True
        found = found if isinstance(found, dict) else {}
        diff = ", ".join(f"{k}={found.get(k, '?')!r} (asked {v!r})" for k, v in params.items() if found.get(k) != v)
        raise ValueError(f"{out} holds a synthesized dataset made with other parameters: {diff}; "
                         "choose another folder or delete it")
    if any(out.iterdir()):
        raise ValueError(f"{out} is not empty and is not a synthesized dataset; refusing to overwrite it")
    return False


def synthesize_dataset(out_dir: str | Path, *, speakers: int = DEFAULT_SPEAKERS, seed: int = 0,
                       words: Sequence[str] = KEYWORDS + UNKNOWN_WORDS, clips_per_speaker: int = 1,
                       val_fraction: float = 0.1, test_fraction: float = 0.1, noise_seconds: float = 30,
                       progress: bool = True) -> Path:
    """Synthesize a Speech-Commands-layout dataset into ``out_dir`` and return its path.

    Writes ``<word>/<speaker>_nohash_<n>.wav`` (16 kHz mono int16, exactly 1 s),
    ``validation_list.txt`` / ``testing_list.txt`` (speaker-disjoint), ``_background_noise_/``
    (white, pink, brown noise and a mains hum) and ``manifest.json`` (parameters, espeak version,
    counts, content fingerprint). Cached: if ``out_dir`` holds the same dataset it returns at once;
    if it holds anything else, ``ValueError``. Built in a temporary sibling folder and renamed, so an
    interrupted run never leaves a dataset that looks complete. Same parameters -> same bytes.
    """
    return _synthesize(out_dir, dict(speakers=speakers, seed=seed, words=words, clips_per_speaker=clips_per_speaker,
                                      val_fraction=val_fraction, test_fraction=test_fraction,
                                      noise_seconds=noise_seconds), progress)[0]


def _synthesize(out_dir: str | Path, params: dict[str, Any], progress: bool) -> tuple[Path, bool]:
    """:func:`synthesize_dataset`, also telling whether it built the dataset (False: cache hit)."""
    out = Path(out_dir).expanduser().absolute()
    params = _params(**params)
    if _check_existing(out, params):
        log.info("using the synthesized dataset in %s", out)
        return out, False
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    try:
        _build(tmp, params, progress)
        try:
            os.rename(tmp, out)  # atomic; replaces an empty directory, fails on a non-empty one
        except OSError:
            if _check_existing(out, params):  # another process finished the same dataset meanwhile
                shutil.rmtree(tmp, ignore_errors=True)
                return out, False
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out, True


def _build(tmp: Path, params: dict[str, Any], progress: bool) -> dict[str, Any]:
    """Synthesize everything into ``tmp`` (which must not exist); return the manifest written there."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    tmp.mkdir()
    seed, words, reps = params["seed"], params["words"], params["clips_per_speaker"]
    voices, variants = espeak_voice_lists(espeak_data_path())  # the library itself is loaded in the child only
    if not voices:
        raise RuntimeError(f"no English espeak voice found in {espeak_data_path()}")
    spk = _speakers(params["speakers"], seed, voices, variants)
    split = _split([s["id"] for s in spk], params["val_fraction"], params["test_fraction"])

    jobs, plan = [], []  # one utterance per clip; small per-repetition jitter of rate and pitch
    for i, s in enumerate(spk):
        for w in words:
            for r in range(reps):
                rng = np.random.default_rng([seed, 2, i, zlib.crc32(w.encode()), r])
                jit = (0, 0) if r == 0 else (int(rng.integers(-15, 16)), int(rng.integers(-4, 5)))
                plan.append(dict(text=w, voice=s["voice"], rate=s["rate"] + jit[0], pitch=s["pitch"] + jit[1],
                                 range=s["range"], seed=int(rng.integers(2**31))))
                jobs.append((s, w, r, rng))

    files: dict[str, str] = {}  # relative path -> sha256, for the fingerprint

    def put(rel: str, data: bytes) -> None:
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[rel] = hashlib.sha256(data).hexdigest()

    info, raws = speak_all(plan)
    lists: dict[str, list[str]] = {"validation": [], "testing": []}
    per_word: dict[str, int] = {}
    with contextlib.closing(raws):  # on any error, stop the child now
        for raw, (s, w, r, rng) in tqdm(zip(raws, jobs, strict=True), total=len(jobs), desc="synthesizing clips",
                                        unit="clip", disable=not progress):
            rel = f"{w}/{s['id']}_nohash_{r}.wav"
            put(rel, _wav_bytes(_make_clip(raw, info["sample_rate"], rng)))
            per_word[w] = per_word.get(w, 0) + 1
            if split[s["id"]] in lists:
                lists[split[s["id"]]].append(rel)
    noises = _background_noises(seed, params["noise_seconds"])
    for name, x in noises.items():
        put(f"{BACKGROUND_NOISE_DIR}/{name}.wav", _wav_bytes(x))
    for name, rels in lists.items():
        put(f"{name}_list.txt", "".join(f"{p}\n" for p in sorted(rels)).encode())

    n_split = {k: sum(v == k for v in split.values()) for k in ("training", "validation", "testing")}
    fingerprint = _fingerprint(files)
    manifest = {
        "format": _FORMAT, "params": params, "espeak_version": info["version"],
        "espeak_sample_rate": info["sample_rate"], "sample_rate": SAMPLE_RATE,
        "counts": {"clips": len(jobs), "words": per_word, "speakers": n_split,
                   "clips_per_split": {"training": len(jobs) - len(lists["validation"]) - len(lists["testing"]),
                                       "validation": len(lists["validation"]), "testing": len(lists["testing"])},
                   "background_noise_files": len(noises)},
        "speakers": [{**s, "split": split[s["id"]]} for s in spk],
        "fingerprint": fingerprint,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    log.info("synthesized %d clips in %.1f s", len(jobs), time.perf_counter() - t0)
    return manifest
