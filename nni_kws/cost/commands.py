"""``nni-kws profile`` (measure a latency table) and ``nni-kws cost`` (all costs of an arch, as JSON)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nni_kws.files import read_json
from nni_kws.space import PRESETS, arch_file_meta, arch_file_space, build_space, load_arch

from .costmodel import CostModel
from .latency import BACKENDS, CLOCKS, STATISTICS, LatencyTable

__all__ = ["register", "run_profile", "run_cost"]


def _space_args(parser: argparse.ArgumentParser, preset_default: str | None) -> None:
    default_text = preset_default or "the arch file's 'preset' key, else paper"
    parser.add_argument("--preset", default=preset_default, choices=sorted(PRESETS),
                        help=f"space preset (default: {default_text})")
    parser.add_argument("--frontend", choices=["raw", "sinc", "conv", "mfcc"], help="front end of the space")
    parser.add_argument("--coarse", action="store_true", default=None, help="coarse space (k{k}e{e} block choices)")


def _space(preset: str, frontend: str | None, coarse: bool | None) -> Any:
    overrides = {k: v for k, v in (("frontend", frontend), ("coarse", coarse)) if v is not None}
    return build_space(preset, **overrides)


def run_profile(args: argparse.Namespace) -> int:
    if args.repeats < 1 or args.threads < 1:
        raise ValueError("--repeats and --threads must be positive")
    space = _space(args.preset, args.frontend, args.coarse)
    lut = LatencyTable.measure(space, args.backend, args.repeats, args.threads, args.rounds, args.calibration,
                               args.clock, args.statistic)
    lut.meta["space"] = {"preset": args.preset, "frontend": args.frontend, "coarse": args.coarse}
    path = lut.save(args.out)
    print(f"wrote {path}: {len(lut.entries)} configurations, per-model overhead {lut.overhead_ms:.3f} ms "
          f"({args.backend}, {args.threads} thread(s), {args.clock} clock, {args.statistic})")
    return 0


#: Bit-widths the cost command accepts (a weight or activation of 0 bits, or of more than 32, is a typo).
BIT_RANGE = range(1, 33)


def _bits(text: str) -> int | dict[str, int]:
    if text.isdigit():
        bits = int(text)
        if bits not in BIT_RANGE:
            raise ValueError(f"--bits must be in 1..32, got {bits}")
        return bits
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(f"--bits: neither an integer in 1..32 nor an existing JSON file: {text}")
    bits = read_json(path, hint="expected a JSON object {layer name: bits}")
    for name, b in bits.items():
        if isinstance(b, bool) or not isinstance(b, int) or b not in BIT_RANGE:
            raise ValueError(f"--bits {text}: layer {name!r} has {b!r} bits; expected an int in 1..32")
    return bits


def _check_layer_names(bits: int | dict[str, int], layers: list[str], source: str) -> None:
    """Per-layer bits must name layers of the model (an unknown name would silently stay at 32 bits)."""
    if isinstance(bits, dict):
        unknown = sorted(set(bits) - set(layers))
        if unknown:
            raise ValueError(f"--bits {source}: no layer {unknown[0]!r} in this architecture (layers: "
                             f"{', '.join(layers[:6])}{', ...' if len(layers) > 6 else ''})")


def run_cost(args: argparse.Namespace) -> int:
    path = Path(args.arch)
    if not path.exists():
        raise FileNotFoundError(f"architecture file not found: {path}")
    # the space named by the {"arch": ...} wrapper, or the raw-front-end one for a bare arch with a "frontend" label
    preset = args.preset or arch_file_meta(path).get("preset", "paper")
    space = arch_file_space(path, preset=preset, frontend=args.frontend, coarse=args.coarse)
    arch = load_arch(path, space)
    cm = CostModel(space, args.lut, args.fallback, include_frontend=not args.exclude_frontend)
    bits = _bits(args.bits)
    if args.act_bits not in BIT_RANGE:
        raise ValueError(f"--act-bits must be in 1..32, got {args.act_bits}")
    _check_layer_names(bits, [layer.name for layer in cm.layers(arch)], args.bits)
    costs = cm.exact(arch, bits, args.act_bits)
    print(json.dumps({"preset": preset, **costs, "bits": bits if isinstance(bits, int) else args.bits,
                      "act_bits": args.act_bits,
                      "lut": args.lut}, indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    profile = subparsers.add_parser("profile", help="measure the latency look-up table of a space on this machine")
    _space_args(profile, "small")
    profile.add_argument("--backend", default="torch-cpu", choices=BACKENDS)
    profile.add_argument("--out", default="lut.json", help="output JSON (default: lut.json)")
    profile.add_argument("--repeats", type=int, default=100, help="timed calls per configuration (default 100)")
    profile.add_argument("--rounds", type=int, default=5, help="interleaved passes the repeats are split over")
    profile.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    profile.add_argument("--calibration", type=int, default=10, help="random archs for the per-model overhead")
    profile.add_argument("--clock", default="wall", choices=sorted(CLOCKS),
                         help="wall: elapsed time (default); cpu: thread CPU time, robust to other processes")
    profile.add_argument("--statistic", default="median", choices=sorted(STATISTICS),
                         help="median (default) or min of the repeats; on a shared machine use --clock cpu "
                              "--statistic min")
    profile.set_defaults(func=run_profile)

    cost = subparsers.add_parser("cost", help="print params, MACs, memory and latency of an architecture as JSON")
    cost.add_argument("arch", help="architecture JSON (a dict, or {\"arch\": {...}, \"preset\": ...})")
    _space_args(cost, None)
    cost.add_argument("--lut", help="latency table from `nni-kws profile` (else latency_ms is null)")
    cost.add_argument("--bits", default="32", help="weight bit-width, or a JSON file {layer name: bits} (default 32)")
    cost.add_argument("--act-bits", type=int, default=32, help="activation bit-width (default 32)")
    cost.add_argument("--fallback", choices=["macs"], help="estimate configurations missing from the table from MACs")
    cost.add_argument("--exclude-frontend", action="store_true",
                      help="leave MFCC feature extraction out of macs (it stays on its own frontend_macs line)")
    cost.set_defaults(func=run_cost)
