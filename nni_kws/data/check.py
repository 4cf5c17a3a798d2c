"""``nni-kws data check``: validate a Speech-Commands-layout dataset folder (synthesized or real)."""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import soundfile as sf
from tqdm import tqdm

from .audio import check_clip
from .gsc import SpeechCommands, is_test_folder, require_test_folder
from .labels import BACKGROUND_NOISE_DIR, CLASSES, CLIP_SAMPLES, SAMPLE_RATE
from .synth import dataset_fingerprint

__all__ = ["check_dataset"]

_MAX_LISTED = 20  # problems printed in full; the rest are only counted


def _speaker(rel: str) -> str:
    """Speaker id of ``word/<speaker>_nohash_<n>.wav`` (Speech Commands naming)."""
    return rel.rsplit("/", 1)[-1].split("_nohash_", 1)[0]


def _header(path: Path) -> tuple[int, int, int]:
    """(sample rate, channels, frames) of a WAV file; ``AudioFileError``/``ValueError`` if unusable."""
    check_clip(path)  # the loader's own checks (empty, truncated, not WAV, ...)
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError) as e:
        raise ValueError(f"{path}: not a readable WAV file ({e})") from None
    return info.samplerate, info.channels, info.frames


def _clips(root: Path, folders: list[str]) -> list[str]:
    """``<folder>/<file>.wav`` of every clip in ``folders``, sorted."""
    return [f"{w}/{e.name}" for w in folders for e in sorted(os.scandir(root / w), key=lambda e: e.name)
            if e.name.endswith(".wav")]


def _check_headers(root: Path, clips: list[str], problems: list[str], progress: bool) -> Counter[str]:
    """Check every clip's header (unusable ones go to ``problems``); count those not 16 kHz, mono, 1 s."""
    odd: Counter[str] = Counter()
    for rel in tqdm(clips, desc="checking clips", unit="clip", disable=not progress):
        try:
            sr, ch, frames = _header(root / rel)
        except ValueError as e:  # AudioFileError is a ValueError
            problems.append(str(e))
            continue
        odd["not_16khz"] += sr != SAMPLE_RATE
        odd["not_mono"] += ch != 1
        odd["not_1s"] += frames != (CLIP_SAMPLES * sr) // SAMPLE_RATE
    return odd


def _check_test_folder(root: Path, progress: bool) -> dict[str, Any]:
    """Check a pre-split test folder: the 12 class folders and every clip's header; it has no splits or noise."""
    problems: list[str] = []
    try:
        require_test_folder(root)
    except ValueError as e:
        problems.append(str(e))
    classes = [c for c in CLASSES if (root / c).is_dir()]
    clips = _clips(root, classes)
    odd = _check_headers(root, clips, problems, progress)
    return {"root": str(root), "layout": "pre-split test set", "ok": not problems, "clips": len(clips),
            "usable_as": "--real-test DIR (evaluation only); or --data DIR with --train-list/--test-list",
            "classes": {c: sum(r.startswith(c + "/") for r in clips) for c in classes},
            **{k: odd[k] for k in ("not_16khz", "not_mono", "not_1s")},
            "num_problems": len(problems), "problems": problems[:_MAX_LISTED]}


def check_dataset(root: str | Path, progress: bool = True) -> dict[str, Any]:
    """Validate a Speech-Commands-layout folder (synthesized or real) and return a JSON-able report.

    Checks every clip's header (via the loader's ``check_clip``), the split lists (files exist,
    lists disjoint, speakers disjoint across training/validation/testing), the background noise
    folder, and for synthesized data the manifest's counts and content fingerprint. Clips that are
    not 16 kHz mono or not exactly 1 s are counted (real Speech Commands has short clips), not errors.
    A pre-split test folder (class folders, no lists) is checked as one: its classes and clips.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    if is_test_folder(root):
        return _check_test_folder(root, progress)
    problems: list[str] = []
    words = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith(("_", ".")))
    clips = _clips(root, words)
    if not clips:
        problems.append("no clips (<word>/*.wav)")
    odd = _check_headers(root, clips, problems, progress)

    clip_set, lists = set(clips), {}
    for name in ("validation", "testing"):
        path = root / f"{name}_list.txt"
        if not path.is_file():
            problems.append(f"missing {path.name}")
            lists[name] = set()
            continue
        lists[name] = {ln.strip().replace("\\", "/") for ln in path.read_text().splitlines() if ln.strip()}
        missing = sorted(lists[name] - clip_set)
        if missing:
            problems.append(f"{path.name}: {len(missing)} listed files do not exist, e.g. {missing[0]}")
    if both := lists["validation"] & lists["testing"]:
        problems.append(f"{len(both)} files are in both validation and testing lists, e.g. {min(both)}")
    split = {rel: "validation" if rel in lists["validation"] else "testing" if rel in lists["testing"]
             else "training" for rel in clips}
    speakers: dict[str, set[str]] = {"training": set(), "validation": set(), "testing": set()}
    for rel, where in split.items():
        speakers[where].add(_speaker(rel))
    for a, b in (("training", "validation"), ("training", "testing"), ("validation", "testing")):
        if shared := speakers[a] & speakers[b]:
            problems.append(f"{len(shared)} speakers are in both {a} and {b}, e.g. {min(shared)}")

    noise_dir = root / BACKGROUND_NOISE_DIR
    noises = sorted(noise_dir.glob("*.wav")) if noise_dir.is_dir() else []
    if not noises:
        problems.append(f"no background noise files in {noise_dir}")
    for path in noises:
        try:
            _header(path)
        except ValueError as e:
            problems.append(str(e))

    manifest_path, synthesized = root / "manifest.json", None
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        synthesized = {"espeak_version": manifest.get("espeak_version"), "params": manifest.get("params")}
        if manifest.get("counts", {}).get("clips") != len(clips):
            problems.append(f"manifest says {manifest.get('counts', {}).get('clips')} clips, found {len(clips)}")
        if dataset_fingerprint(root) != manifest.get("fingerprint"):
            problems.append("content fingerprint differs from manifest.json (files changed since synthesis)")

    subsets: dict[str, Any] = {}
    if not problems:  # can the training code read it? (only when the files themselves are fine)
        for name in ("training", "validation", "testing"):
            try:
                subsets[name] = SpeechCommands(root, name, on_error=None).class_counts()
            except (ValueError, FileNotFoundError) as e:
                problems.append(f"SpeechCommands({name!r}): {e}")

    return {
        "root": str(root), "layout": "speech-commands", "ok": not problems, "clips": len(clips),
        "words": {w: sum(r.startswith(w + "/") for r in clips) for w in words},
        "files_per_split": dict(Counter(split.values())),
        "speakers_per_split": {k: len(v) for k, v in speakers.items()},
        "background_noise_files": len(noises), **{k: odd[k] for k in ("not_16khz", "not_mono", "not_1s")},
        "synthesized": synthesized, "subsets": subsets,
        "num_problems": len(problems), "problems": problems[:_MAX_LISTED],
    }
