"""``nni-kws search-space``: write (or check) the spaces' NNI search-space JSON under ``search_spaces/``."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .arch import build_space, search_space_json, space_name
from .kws_space import PRESETS

__all__ = ["register", "render", "write_all"]

# Files checked in under search_spaces/: one per preset and front end.
SPACES = {space_name(preset, frontend): dict(preset=preset, frontend=frontend)
          for preset in PRESETS for frontend in ("raw", "mfcc")}


def render(preset: str = "paper", frontend: str = "raw") -> str:
    """The search-space JSON text of one space (stable formatting, so diffs stay readable)."""
    return json.dumps(search_space_json(build_space(preset, frontend=frontend)), indent=2) + "\n"


def write_all(out_dir: str | Path, check: bool = False) -> list[Path]:
    """Write every file of :data:`SPACES`; with ``check``, return the stale or missing ones instead."""
    out_dir = Path(out_dir)
    stale = []
    for name, kwargs in SPACES.items():
        path, text = out_dir / f"{name}.json", render(**kwargs)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
        else:
            out_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return stale


def run(args: argparse.Namespace) -> int:
    one = args.preset is not None or args.frontend is not None  # one space asked for, else every file
    preset, frontend = args.preset or "small", args.frontend or "raw"
    if args.print:
        print(render(preset, frontend), end="")
        return 0
    if one:
        if args.check:
            raise ValueError("--check checks every file; leave out --preset/--frontend")
        path = Path(args.out) / f"{space_name(preset, frontend)}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(preset, frontend))
        print(f"wrote {path}")
        return 0
    stale = write_all(args.out, check=args.check)
    if args.check:
        for path in stale:
            print(f"stale: {path} (run `nni-kws search-space --out {args.out}`)")
        return 1 if stale else 0
    print(f"wrote {len(SPACES)} search spaces to {args.out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("search-space", help="write the NNI search-space JSON files (for nnictl tuners)")
    parser.add_argument("--out", default="search_spaces", help="output folder (default: search_spaces)")
    parser.add_argument("--check", action="store_true", help="only check that the files are current")
    parser.add_argument("--print", action="store_true", help="print one space instead of writing files")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="write (or print) this preset's space only (default: every file; printed: small)")
    parser.add_argument("--frontend", choices=["raw", "sinc", "conv", "mfcc"],
                        help="front end of that space (default: raw)")
    parser.set_defaults(func=run)
