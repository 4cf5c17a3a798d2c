"""The ``nni-kws`` command.

Each sub-command lives next to the code it drives, in a module that defines
``register(subparsers)``; this file only collects them, so adding a command never touches
another team's module.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

# module path -> holds ``register(subparsers)``; imported lazily so ``--help`` stays fast.
COMMAND_MODULES = [
    "nni_kws.data.commands",       # data synth / data check
    "nni_kws.space.commands",      # search-space
    "nni_kws.cost.commands",       # profile / cost
    "nni_kws.search.commands",     # search / train / run / sweep
    "nni_kws.quant.commands",      # quantize
    "nni_kws.nnictl.commands",     # experiment (multi-trial NAS from Python, web UI)
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nni-kws",
        description="Hardware-aware keyword-spotting NAS and learned bit-width quantization on NNI 3.0.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name and name.startswith(err.name):  # module not written yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as err:  # user errors: one clear line, no traceback
        print(f"nni-kws {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
