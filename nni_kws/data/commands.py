"""``nni-kws data synth`` (make the offline espeak-ng dataset) and ``nni-kws data check ROOT``."""
from __future__ import annotations

import argparse
import json
import time

__all__ = ["register", "run"]


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
    from .check import check_dataset

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
