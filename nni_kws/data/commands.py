"""``nni-kws data synth`` (make the offline espeak-ng dataset) and ``nni-kws data check ROOT``."""
from __future__ import annotations

import argparse
import json
import time

from .paths import NOISE_DIR

__all__ = ["register", "run"]


def run(args: argparse.Namespace) -> int:
    return _run_synth(args) if args.data_command == "synth" else _run_check(args)


def _run_synth(args: argparse.Namespace) -> int:
    from .synth import _synthesize, _with_preset, default_dataset_dir

    given = dict(speakers=args.speakers, seed=args.seed, clips_per_speaker=args.clips_per_speaker,
                 noise_seconds=args.noise_seconds, flite_speakers=args.flite_speakers, room=args.room,
                 channel=args.channel, recorded_noise=args.recorded_noise, words=args.words, keywords=args.keywords,
                 speed=tuple(float(v) for v in args.speed.split(",")) if args.speed else None)
    params = _with_preset(args.preset, {k: v for k, v in given.items() if v is not None})
    out = args.out or default_dataset_dir(**params)
    t0 = time.perf_counter()
    path, built = _synthesize(out, params, progress=not args.quiet)
    manifest = json.loads((path / "manifest.json").read_text())
    print(json.dumps({"path": str(path), "built": built, "seconds": round(time.perf_counter() - t0, 2),
                      "keywords": manifest["keywords"], "espeak_version": manifest["espeak_version"],
                      "flite_version": manifest["flite_version"], "counts": manifest["counts"],
                      "fingerprint": manifest["fingerprint"]}, indent=1))
    return 0


def _run_check(args: argparse.Namespace) -> int:
    from .check import check_dataset

    report = check_dataset(args.root, progress=not args.quiet)
    print(json.dumps(report, indent=1))
    return 0 if report["ok"] else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    from .synth import DEFAULT_SPEAKERS, PRESETS

    parser = subparsers.add_parser("data", help="make or check a Speech-Commands-layout dataset")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    synth = sub.add_parser("synth", help="synthesize an offline dataset with espeak-ng and flite (cached)")
    synth.add_argument("--out", help="output folder (default: $NNI_KWS_DATA or ~/.cache/nni-kws/synth-<hash>)")
    synth.add_argument("--preset", choices=sorted(PRESETS), help="a named parameter set; options below override it "
                       "(default: 'today', the espeak-only recipe)")
    synth.add_argument("--keywords", help="comma-separated keywords or phrases, e.g. 'marvin,lights on,hey nni' "
                       "(default: the 10 Speech Commands keywords)")
    synth.add_argument("--words", help="comma-separated words to say (default: the keywords and the other Speech "
                       "Commands words, which make the _unknown_ class)")
    synth.add_argument("--speakers", type=int, help=f"espeak voices (default: {DEFAULT_SPEAKERS})")
    synth.add_argument("--flite-speakers", type=int, help="flite voices (default: 0; needs the flite program)")
    synth.add_argument("--speed", help="speed perturbation range 'low,high', e.g. 0.88,1.12 (default: none)")
    synth.add_argument("--room", type=float, help="probability of a simulated room per clip (default: 0)")
    synth.add_argument("--channel", type=float, help="probability of channel effects per clip (default: 0)")
    synth.add_argument("--recorded-noise", metavar="DIR", help="folder of noise recordings to include, or 'shared' "
                       f"(the shared data folder's {NOISE_DIR}/)")
    synth.add_argument("--seed", type=int, help="random seed (default: 0)")
    synth.add_argument("--clips-per-speaker", type=int, help="repetitions of each word (default: 1)")
    synth.add_argument("--noise-seconds", type=float, help="length of each synthetic noise file (default: 30)")
    synth.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    check = sub.add_parser("check", help="validate a dataset folder (layout, audio headers, speaker-disjoint splits)")
    check.add_argument("root", help="dataset folder (Speech Commands layout)")
    check.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
