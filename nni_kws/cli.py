"""The ``nni-kws`` command.

Each sub-command lives next to the code it drives, in a module that defines
``register(subparsers)``; this file maps command names to those modules and quiets library chatter.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings

# command -> module holding ``register(subparsers)``. Only the module of the command being run is
# imported (each pulls in torch and NNI, seconds under load); ``--help`` imports them all.
COMMANDS = {
    "data": "nni_kws.data.commands",              # data synth / data check
    "search-space": "nni_kws.space.commands",     # NNI search-space JSON
    "profile": "nni_kws.cost.commands",           # latency look-up table
    "cost": "nni_kws.cost.commands",              # costs of one architecture
    "search": "nni_kws.pipeline.commands",        # hardware-aware one-shot search
    "train": "nni_kws.pipeline.commands",         # retrain a frozen architecture
    "run": "nni_kws.pipeline.commands",           # the whole job
    "sweep": "nni_kws.pipeline.commands",         # Pareto front
    "quantize": "nni_kws.quant.commands",         # learned or fixed bit-widths
    "experiment": "nni_kws.nnictl.commands",      # multi-trial NAS with the web UI
}


class _DropMessages(logging.Filter):
    """Drops log records containing any of ``parts`` (known, harmless library chatter)."""

    def __init__(self, *parts: str) -> None:
        super().__init__()
        self.parts = parts

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(part in record.getMessage() for part in self.parts)

def quiet_libraries() -> None:
    """Silence warnings that do not apply to in-process runs, so progress and errors stay readable."""
    for message in (r"When using training service to spawn trials", r"`isinstance\(treespec, LeafSpec\)`",
                    r"The number of training batches .* is smaller than the logging interval",
                    r".* is found to be not a nn.Module, which is unexpected"):
        warnings.filterwarnings("ignore", message=message)
    logging.getLogger("nni.nas.evaluator.pytorch.lightning").addFilter(
        _DropMessages("Validation dataloaders are missing"))
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_DropMessages("Tip:", "TPU available", "estimate number of stepping batches"))



def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, with only ``command``'s module registered when it is a known command."""
    parser = argparse.ArgumentParser(
        prog="nni-kws",
        description="Hardware-aware keyword-spotting NAS and learned bit-width quantization on NNI 3.0.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
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
        return int(getattr(err, "exit_code", 2))


if __name__ == "__main__":
    sys.exit(main())
