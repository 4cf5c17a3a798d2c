"""``nni-kws data synth`` (make the offline espeak-ng dataset) and ``nni-kws data check ROOT``."""
from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from .labels import BACKGROUND_NOISE_DIR, CLIP_SAMPLES, SAMPLE_RATE

__all__ = ["check_dataset", "register", "run"]

_MAX_LISTED = 20  # problems printed in full; the rest are only counted


def _speaker(rel: str) -> str:
    """Speaker id of ``word/<speaker>_nohash_<n>.wav`` (Speech Commands naming)."""
    return rel.rsplit("/", 1)[-1].split("_nohash_", 1)[0]


def _header(path: Path) -> tuple[int, int, int]:
    """(sample rate, channels, frames) of a WAV file; ``AudioFileError``/``ValueError`` if unusable."""
    import soundfile as sf

    try:
        from .audio import check_clip  # the loader's own checks (empty, truncated, not WAV, ...)
    except ImportError:
        check_clip = None
    if check_clip is not None:
        check_clip(path)
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError) as e:
        raise ValueError(f"{path}: not a readable WAV file ({e})") from None
    return info.samplerate, info.channels, info.frames


def check_dataset(root: str | Path, progress: bool = True) -> dict[str, Any]:
    """Validate a Speech-Commands-layout folder (synthesized or real) and return a JSON-able report.

    Checks every clip's header (via the loader's ``check_clip``), the split lists (files exist,
    lists disjoint, speakers disjoint across training/validation/testing), the background noise
    folder, and for synthesized data the manifest's counts and content fingerprint. Clips that are
    not 16 kHz mono or not exactly 1 s are counted (real Speech Commands has short clips), not errors.
    """
    from tqdm import tqdm

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    problems: list[str] = []
    words = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith(("_", ".")))
    clips = [f"{w}/{e.name}" for w in words for e in sorted(os.scandir(root / w), key=lambda e: e.name)
             if e.name.endswith(".wav")]
    if not clips:
        problems.append("no clips (<word>/*.wav)")
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
        from .synth import dataset_fingerprint

        manifest = json.loads(manifest_path.read_text())
        synthesized = {"espeak_version": manifest.get("espeak_version"), "params": manifest.get("params")}
        if manifest.get("counts", {}).get("clips") != len(clips):
            problems.append(f"manifest says {manifest.get('counts', {}).get('clips')} clips, found {len(clips)}")
        if dataset_fingerprint(root) != manifest.get("fingerprint"):
            problems.append("content fingerprint differs from manifest.json (files changed since synthesis)")

    subsets: dict[str, Any] = {}
    if not problems:  # can the training code read it? (only when the files themselves are fine)
        try:
            from .gsc import SpeechCommands
        except ImportError:
            SpeechCommands = None
        for name in ("training", "validation", "testing") if SpeechCommands else ():
            try:
                subsets[name] = SpeechCommands(root, name, on_error=None).class_counts()
            except (ValueError, FileNotFoundError) as e:
                problems.append(f"SpeechCommands({name!r}): {e}")

    return {
        "root": str(root), "ok": not problems, "clips": len(clips),
        "words": {w: sum(r.startswith(w + "/") for r in clips) for w in words},
        "files_per_split": dict(Counter(split.values())),
        "speakers_per_split": {k: len(v) for k, v in speakers.items()},
        "background_noise_files": len(noises), **{k: odd[k] for k in ("not_16khz", "not_mono", "not_1s")},
        "synthesized": synthesized, "subsets": subsets,
        "num_problems": len(problems), "problems": problems[:_MAX_LISTED],
    }


def run(args: argparse.Namespace) -> int:
    return _run_synth(args) if args.data_command == "synth" else _run_check(args)


def _run_synth(args: argparse.Namespace) -> int:
    from .synth import _synthesize, default_dataset_dir

    params = dict(speakers=args.speakers, seed=args.seed, clips_per_speaker=args.clips_per_speaker,
                  noise_seconds=args.noise_seconds)
    if args.words:
        params["words"] = [w.strip() for w in args.words.split(",") if w.strip()]
    out = args.out or default_dataset_dir(**params)
    t0 = time.perf_counter()
    path, built = _synthesize(out, params, progress=not args.quiet)
    manifest = json.loads((path / "manifest.json").read_text())
    print(json.dumps({"path": str(path), "built": built, "seconds": round(time.perf_counter() - t0, 2),
                      "espeak_version": manifest["espeak_version"], "counts": manifest["counts"],
                      "fingerprint": manifest["fingerprint"]}, indent=1))
    return 0


def _run_check(args: argparse.Namespace) -> int:
    report = check_dataset(args.root, progress=not args.quiet)
    print(json.dumps(report, indent=1))
    return 0 if report["ok"] else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    from .synth import DEFAULT_SPEAKERS

    parser = subparsers.add_parser("data", help="make or check a Speech-Commands-layout dataset")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    synth = sub.add_parser("synth", help="synthesize the offline default dataset with espeak-ng (cached)")
    synth.add_argument("--out", help="output folder (default: $NNI_KWS_DATA or ~/.cache/nni-kws/synth-<hash>)")
    synth.add_argument("--speakers", type=int, default=DEFAULT_SPEAKERS,
                       help=f"number of synthetic speakers (default: {DEFAULT_SPEAKERS})")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    synth.add_argument("--clips-per-speaker", type=int, default=1, help="repetitions of each word (default: 1)")
    synth.add_argument("--noise-seconds", type=float, default=30, help="length of each background noise file")
    synth.add_argument("--words", help="comma-separated words (default: the 35 Speech Commands words)")
    synth.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    check = sub.add_parser("check", help="validate a dataset folder (layout, audio headers, speaker-disjoint splits)")
    check.add_argument("root", help="dataset folder (Speech Commands layout)")
    check.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
