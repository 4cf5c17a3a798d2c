"""The offline default dataset: Speech-Commands-like clips synthesized with espeak-ng (and flite).

Real Speech Commands needs a 2 GB download; this module makes a dataset in the same layout
(``<word>/<speaker>_nohash_<n>.wav``, ``validation_list.txt``, ``testing_list.txt``,
``_background_noise_/``) offline, from the ``espeakng-loader`` wheel and, when installed, the
``flite`` executable (a second synthesis family). Any keyword list works (phrases included); the
other words of the vocabulary are the ``_unknown_`` class.

The data engine, each part switchable (parameters of :func:`synthesize_dataset`, all part of the
cache key): ``speakers`` espeak voices (accent x variant x pitch x range x rate x word gap),
``flite_speakers`` flite voices, ``speed`` perturbation (resampling: formants move too), ``room``
acoustics (simulated shoebox rooms), ``channel`` effects (band limit, gain, clipping, codec) and
``recorded_noise`` (real background recordings copied next to the synthetic noises). :data:`PRESETS`
name tested combinations. Same parameters -> same bytes: espeak speaks in a fresh child process
(see :mod:`~nni_kws.data.espeak`), flite has no state, and every random draw is seeded.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import logging
import os
import shutil
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from nni_kws.files import file_lock

from .acoustics import make_clip, room_bank, synthetic_noises
from .espeak import ENGLISH_VOICES, Espeak, espeak_data_path, espeak_voice_lists, speak_all
from .flite import flite_speak_all, flite_version, flite_voices
from .labels import BACKGROUND_NOISE_DIR, KEYWORDS, MANIFEST, SAMPLE_RATE, UNKNOWN_WORDS, parse_keywords
from .speakers import espeak_speakers, flite_speakers, split_speakers, voice_config

__all__ = [
    "DEFAULT_PRESET", "DEFAULT_SPEAKERS", "ENGLISH_VOICES", "Espeak", "PRESETS", "dataset_fingerprint",
    "default_dataset_dir",
    "ensure_default_dataset", "synthesize_dataset",
]

log = logging.getLogger(__name__)

#: Bump when the synthesis recipe changes: part of the cache key, so old caches are not reused.
SYNTH_VERSION = 3  # 3: room impulse responses computed on one thread (the same bytes on every machine)
#: Default number of espeak speakers of the legacy recipe (35 words x 100 speakers = 3500 clips).
DEFAULT_SPEAKERS = 100
_FORMAT = "nni-kws-synth"
_DEFAULTS: dict[str, Any] = dict(
    speakers=DEFAULT_SPEAKERS, seed=0, words=None, keywords=None, clips_per_speaker=1,
    val_fraction=0.1, test_fraction=0.1, noise_seconds=30,
    flite_speakers=0, speed=None, room=0.0, channel=0.0, recorded_noise=None,
)
#: Named parameter sets: ``today`` is the original espeak-only recipe; ``demo`` adds a second synthesis family
#: (flite), speed perturbation, rooms and channel effects (the best combination measured by
#: ``benchmarks/sim_to_real.py``, with a test split of 500 items); ``full`` is the same recipe with >= 1,000
#: espeak voices. Recorded noise (``recorded_noise="shared"`` or a folder) is an option, not in the presets.
#: The synthesis preset of ``nni-kws run`` and of nnictl trials without a dataset (best measured in
#: ``benchmarks/results/sim_to_real.json`` within the demo's time).
DEFAULT_PRESET = "demo"
PRESETS: dict[str, dict[str, Any]] = {
    "today": {},
    "demo": dict(speakers=100, flite_speakers=100, test_fraction=0.2, speed=(0.88, 1.12), room=0.5, channel=0.5),
    "full": dict(speakers=1000, flite_speakers=400, test_fraction=0.1, speed=(0.88, 1.12), room=0.5, channel=0.5),
}


def _wav_bytes(x: np.ndarray) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, x, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Parameters (the dataset's identity and cache key)
# --------------------------------------------------------------------------------------------
def _recorded_noise_dir(value: str | Path | None) -> Path | None:
    """The folder of recorded noise named by ``value``: None, a path, or ``"shared"`` (shared data folder)."""
    if value is None:
        return None
    if str(value) == "shared":
        from .paths import NOISE_DIR, shared_data_dir

        found = shared_data_dir(NOISE_DIR)
        if found is None:
            _notice(f"recorded noise: no {NOISE_DIR}/ in the shared data folder; synthetic noise only")
        return found
    path = Path(value).expanduser()
    if not path.is_dir() or not list(path.glob("*.wav")):
        raise FileNotFoundError(f"recorded noise folder not found or without .wav files: {path}")
    return path


def _noise_digest(folder: Path) -> str:
    """Content hash of a noise folder's ``.wav`` files (names and bytes): the cache key part of recorded noise."""
    h = hashlib.sha256()
    for f in sorted(folder.glob("*.wav")):
        h.update(f.name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def _notice(message: str) -> None:
    """Log ``message`` once per process (a missing optional part is worth one line, not one per call)."""
    log.warning(message)


def _words(words: Any, keywords: Any) -> tuple[list[str], list[str]]:
    """(all words to synthesize, keywords) from the user's ``words`` and ``keywords`` (either may be None)."""
    vocabulary = KEYWORDS + UNKNOWN_WORDS
    if keywords is not None:
        keys = list(parse_keywords(keywords))
        others = vocabulary if words is None else parse_keywords(words)
        spoken = {k.casefold() for k in keys}  # "YES" as a keyword: "yes" is not also an unknown word
        return keys + [w for w in others if w.casefold() not in spoken], keys
    if words is None:
        return list(vocabulary), list(KEYWORDS)
    all_words = list(parse_keywords(words))
    keys = [k for k in KEYWORDS if k in all_words]  # legacy: the Speech Commands keywords among ``words``
    if not keys:
        raise ValueError(f"none of the words {all_words} is a Speech Commands keyword; pass keywords=")
    return all_words, keys


def _params(**params: Any) -> dict[str, Any]:
    """Validate ``params`` and fill defaults: the dataset's identity (cache key)."""
    unknown = set(params) - set(_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown dataset parameters: {sorted(unknown)}")
    p = {**_DEFAULTS, **params}
    words, keywords = _words(p["words"], p["keywords"])
    if int(p["speakers"]) < 0 or int(p["flite_speakers"]) < 0 or int(p["clips_per_speaker"]) < 1:
        raise ValueError("speakers, flite_speakers must be >= 0 and clips_per_speaker >= 1")
    if not (0 <= p["val_fraction"] < 1 and 0 <= p["test_fraction"] < 1) or p["noise_seconds"] <= 0:
        raise ValueError("need 0 <= val_fraction, test_fraction < 1 and noise_seconds > 0")
    if not (0 <= float(p["room"]) <= 1 and 0 <= float(p["channel"]) <= 1):
        raise ValueError("room and channel are probabilities in [0, 1]")
    speed = p["speed"]
    if speed is not None and (len(speed) != 2 or not 0 < float(speed[0]) <= float(speed[1])):
        raise ValueError(f"speed must be a (low, high) pair of positive factors, got {speed!r}")
    n_flite = int(p["flite_speakers"])
    if n_flite and not flite_voices():
        _notice("flite is not installed (apt-get install flite): synthesizing with espeak-ng only")
        n_flite = 0
    if int(p["speakers"]) + n_flite < 1:
        raise ValueError("need at least one speaker")
    noise_dir = _recorded_noise_dir(p["recorded_noise"])
    return dict(speakers=int(p["speakers"]), seed=int(p["seed"]), words=words, keywords=keywords,
                clips_per_speaker=int(p["clips_per_speaker"]), val_fraction=float(p["val_fraction"]),
                test_fraction=float(p["test_fraction"]), noise_seconds=float(p["noise_seconds"]),
                flite_speakers=n_flite, flite_voices=list(flite_voices()) if n_flite else [],
                speed=None if speed is None else [float(speed[0]), float(speed[1])],
                room=float(p["room"]), channel=float(p["channel"]),
                recorded_noise=None if noise_dir is None else _noise_digest(noise_dir), synth_version=SYNTH_VERSION)


def _with_preset(preset: str | None, params: dict[str, Any]) -> dict[str, Any]:
    if preset is None:
        return params
    if preset not in PRESETS:
        raise ValueError(f"unknown synthesis preset {preset!r}; choose from {sorted(PRESETS)}")
    return {**PRESETS[preset], **params}


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
def default_dataset_dir(*, preset: str | None = None, **params: Any) -> Path:
    """``$NNI_KWS_DATA`` if set, else ``~/.cache/nni-kws/synth-<hash of the parameters>``."""
    env = os.environ.get("NNI_KWS_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "nni-kws" / f"synth-{_params_hash(_params(**_with_preset(preset, params)))}"


def ensure_default_dataset(*, progress: bool = True, preset: str | None = None, **params: Any) -> Path:
    """Return the default dataset folder, synthesizing it first if missing.

    ``preset`` names a parameter set of :data:`PRESETS` (``params`` override it; without one, only ``params``:
    the espeak-only ``'today'`` set; the commands' default data is ``preset=DEFAULT_PRESET``); ``keywords=["marvin",
    "lights on"]`` makes a custom-keyword dataset. A folder named by ``$NNI_KWS_DATA`` that already holds a
    dataset is used as it is (real Speech Commands, or synthesized with other parameters), so users can
    point the demo at their data.
    """
    params = _with_preset(preset, params)
    root = default_dataset_dir(**params)
    if os.environ.get("NNI_KWS_DATA") and (root / "testing_list.txt").is_file():
        manifest = root / MANIFEST
        if manifest.is_file() and json.loads(manifest.read_text()).get("params") != _params(**params):
            log.info("using %s from $NNI_KWS_DATA (synthesized with other parameters)", root)
        return root
    # Concurrent processes (NNI trials started together) wait here instead of both synthesizing minutes of
    # speech; the build goes to a temporary folder renamed at the end, so nobody reads a half-written set.
    with file_lock(root.parent / f".{root.name}.lock"):
        log.info("%s the default dataset %s", "reusing" if (root / MANIFEST).is_file() else "synthesizing", root)
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


def synthesize_dataset(out_dir: str | Path, *, progress: bool = True, preset: str | None = None,
                       **params: Any) -> Path:
    """Synthesize a Speech-Commands-layout dataset into ``out_dir`` and return its path.

    Parameters (defaults: the ``today`` recipe): ``speakers`` (espeak voices), ``seed``, ``keywords``
    (default: the 10 Speech Commands keywords; phrases allowed), ``words`` (all words said; default: the
    keywords plus the other Speech Commands words, which become ``_unknown_``), ``clips_per_speaker``,
    ``val_fraction``, ``test_fraction``, ``noise_seconds``, and the data engine: ``flite_speakers``,
    ``speed=(low, high)``, ``room`` and ``channel`` (probabilities per clip), ``recorded_noise`` (a folder
    of noise recordings, or ``"shared"``). ``preset`` starts from :data:`PRESETS`.

    Writes ``<word>/<speaker>_nohash_<n>.wav`` (16 kHz mono int16, exactly 1 s),
    ``validation_list.txt`` / ``testing_list.txt`` (speaker-disjoint), ``_background_noise_/``
    (white, pink, brown noise, a mains hum and the recorded noise files) and ``manifest.json`` (parameters,
    keywords, synthesizer versions, counts, content fingerprint). Cached: if ``out_dir`` holds the same
    dataset it returns at once; if it holds anything else, ``ValueError``. Built in a temporary sibling
    folder and renamed, so an interrupted run never leaves a dataset that looks complete. Same
    parameters -> same bytes.
    """
    return _synthesize(out_dir, _with_preset(preset, params), progress)[0]


def _synthesize(out_dir: str | Path, raw: dict[str, Any], progress: bool) -> tuple[Path, bool]:
    """:func:`synthesize_dataset`, also telling whether it built the dataset (False: cache hit)."""
    out = Path(out_dir).expanduser().absolute()
    params = _params(**raw)
    if _check_existing(out, params):
        log.info("using the synthesized dataset in %s", out)
        return out, False
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    noise_dir = _recorded_noise_dir(raw.get("recorded_noise")) if params["recorded_noise"] else None
    try:
        _build(tmp, params, progress, noise_dir)
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


def _plan(params: dict[str, Any]) -> tuple[list[dict[str, Any]], list[tuple[dict, str, int, Any, Any]]]:
    """The speakers, and one job per clip: (speaker, word, repetition, clip rng, utterance settings)."""
    seed, words, reps = params["seed"], params["words"], params["clips_per_speaker"]
    voices, variants = espeak_voice_lists(espeak_data_path())  # the library itself is loaded in the child only
    if params["speakers"] and not voices:
        raise RuntimeError(f"no English espeak voice found in {espeak_data_path()}")
    spk = espeak_speakers(params["speakers"], seed, voices, variants)
    spk += flite_speakers(params["flite_speakers"], seed, params["flite_voices"])
    if len({s["id"] for s in spk}) != len(spk):  # 8 hex digits: only with absurd speaker counts
        raise ValueError(f"speaker-id collision with {len(spk)} speakers; use fewer")
    jobs = []  # one utterance per clip; small per-repetition jitter of rate/stretch and pitch
    for i, s in enumerate(spk):
        for w in words:
            for r in range(reps):
                k = i if s["engine"] == "espeak" else (7, i)  # espeak streams as in the original recipe
                rng = np.random.default_rng([seed, 2, *np.atleast_1d(k), zlib.crc32(w.encode()), r])
                if s["engine"] == "espeak":
                    jit = (0, 0) if r == 0 else (int(rng.integers(-15, 16)), int(rng.integers(-4, 5)))
                    u = dict(text=w, voice=s["voice"], rate=s["rate"] + jit[0], pitch=s["pitch"] + jit[1],
                             range=s["range"], gap=s["gap"], seed=int(rng.integers(2**31)))
                else:
                    jit = (0.0, 0) if r == 0 else (round(float(rng.uniform(-0.05, 0.05)), 3), int(rng.integers(-8, 9)))
                    u = dict(text=w, voice=s["voice"], stretch=round(s["stretch"] + jit[0], 3), f0=s["f0"] + jit[1],
                             f0_std=s["f0_std"])
                fx_rng = np.random.default_rng([seed, 5, *np.atleast_1d(k), zlib.crc32(w.encode()), r])
                jobs.append((s, w, r, rng, u, fx_rng))
    return spk, jobs


def _build(tmp: Path, params: dict[str, Any], progress: bool, noise_dir: Path | None) -> dict[str, Any]:
    """Synthesize everything into ``tmp`` (which must not exist); return the manifest written there."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    tmp.mkdir()
    spk, jobs = _plan(params)
    split = split_speakers([s["id"] for s in spk], params["val_fraction"], params["test_fraction"])
    effects = dict(speed=params["speed"], room=params["room"], channel=params["channel"],
                   rooms=room_bank(params["seed"]) if params["room"] > 0 else ())

    files: dict[str, str] = {}  # relative path -> sha256, for the fingerprint

    def put(rel: str, data: bytes) -> None:
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[rel] = hashlib.sha256(data).hexdigest()

    espeak_plan = [u for s, _, _, _, u, _ in jobs if s["engine"] == "espeak"]
    info, espeak_raws = speak_all(espeak_plan) if espeak_plan else ({"version": None, "sample_rate": 0},
                                                                     (x for x in ()))
    flite_raws = flite_speak_all([u for s, _, _, _, u, _ in jobs if s["engine"] == "flite"])
    lists: dict[str, list[str]] = {"validation": [], "testing": []}
    per_word: dict[str, int] = {}
    with contextlib.closing(espeak_raws), contextlib.closing(flite_raws):  # on any error, stop the children now
        for s, w, r, rng, _, fx_rng in tqdm(jobs, desc="synthesizing clips", unit="clip", disable=not progress):
            if s["engine"] == "espeak":
                raw, rate = next(espeak_raws)
            else:
                raw, rate = next(flite_raws)
            rel = f"{w}/{s['id']}_nohash_{r}.wav"
            put(rel, _wav_bytes(make_clip(raw, rate, rng, {**effects, "rng": fx_rng})))
            per_word[w] = per_word.get(w, 0) + 1
            if split[s["id"]] in lists:
                lists[split[s["id"]]].append(rel)
    noises = synthetic_noises(params["seed"], params["noise_seconds"])
    for name, x in noises.items():
        put(f"{BACKGROUND_NOISE_DIR}/{name}.wav", _wav_bytes(x))
    recorded = sorted(noise_dir.glob("*.wav")) if noise_dir is not None else []
    for f in recorded:
        put(f"{BACKGROUND_NOISE_DIR}/recorded_{f.name}", f.read_bytes())
    for name, rels in lists.items():
        put(f"{name}_list.txt", "".join(f"{p}\n" for p in sorted(rels)).encode())

    n_split = {k: sum(v == k for v in split.values()) for k in ("training", "validation", "testing")}
    manifest = {
        "format": _FORMAT, "params": params, "keywords": params["keywords"], "espeak_version": info["version"],
        "espeak_sample_rate": info["sample_rate"],
        "flite_version": flite_version() if params["flite_speakers"] else None,
        "sample_rate": SAMPLE_RATE,
        "counts": {"clips": len(jobs), "words": per_word, "speakers": n_split,
                   "speakers_by_engine": {e: sum(x["engine"] == e for x in spk) for e in ("espeak", "flite")},
                   "distinct_voice_configs": len({voice_config(x) for x in spk}),
                   "clips_per_split": {"training": len(jobs) - len(lists["validation"]) - len(lists["testing"]),
                                       "validation": len(lists["validation"]), "testing": len(lists["testing"])},
                   "background_noise_files": len(noises) + len(recorded)},
        "speakers": [{**x, "split": split[x["id"]]} for x in spk],
        "fingerprint": _fingerprint(files),
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    log.info("synthesized %d clips in %.1f s", len(jobs), time.perf_counter() - t0)
    return manifest
