"""One NNI trial of the KWS space: ``python -m nni_kws.trial``.

This is the ``trialCommand`` of the ``nnictl`` configs (``examples/nnictl/*.yml``). NNI 3.0 cannot
run a NAS experiment from ``nnictl`` (only HPO), so the space is exported as an HPO search space
(``search_spaces/<preset>.json``) and this entry point turns a tuner's parameters back into a
model: it freezes the architecture, trains it, reports ``val_acc`` after every epoch and finally
``{'default': accuracy, 'params', 'macs', 'peak_act_kb'}`` (plus ``'latency_ms'`` with ``--lut``), so the web UI lists
accuracy and hardware costs per trial.

Parameters a tuner may send besides the architecture labels: the training hyper-parameters of
:data:`TRAIN_PARAMS` and Hyperband's ``TRIAL_BUDGET`` (epochs = budget × ``--epochs-per-budget``).
Data is read from a folder (``--data`` or ``$NNI_KWS_DATA``), never shipped through NNI.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["TRAIN_PARAMS", "BUDGET_KEY", "split_parameters", "resolve_data", "run_trial", "main"]

_logger = logging.getLogger("nni_kws.trial")

#: Training hyper-parameters a search space may add next to the architecture labels.
TRAIN_PARAMS: dict[str, type] = {"learning_rate": float, "weight_decay": float, "label_smoothing": float,
                                 "batch_size": int}
#: Key Hyperband (and BOHB) add to every parameter set.
BUDGET_KEY = "TRIAL_BUDGET"


def split_parameters(params: Mapping[str, Any], preset: str) -> tuple[dict[str, Any], dict[str, Any], float | None]:
    """Split a tuner's parameters into ``(arch, training kwargs, TRIAL_BUDGET or None)``.

    Raises :class:`~nni_kws.space.InvalidArchitecture` (a ``ValueError``) naming the first bad
    label: unknown, missing, or a value outside the space of ``preset``.
    """
    from nni_kws.nnictl.costs import space_by_name
    from nni_kws.space import validate_arch

    rest = dict(params)
    budget = rest.pop(BUDGET_KEY, None)
    train = {}
    for key in [k for k in rest if k in TRAIN_PARAMS]:
        try:
            train[key] = TRAIN_PARAMS[key](rest.pop(key))
        except (TypeError, ValueError):
            raise ValueError(f"parameter {key!r} must be a {TRAIN_PARAMS[key].__name__}, got {params[key]!r}") from None
    arch = validate_arch(space_by_name(preset), rest)
    return arch, train, (None if budget is None else float(budget))


def resolve_data(data: str | os.PathLike | None) -> Path:
    """The dataset folder: ``data``, else ``$NNI_KWS_DATA``; it must exist (trials never synthesize)."""
    root = data or os.environ.get("NNI_KWS_DATA")
    if not root:
        raise ValueError("no dataset: pass --data DIR or set NNI_KWS_DATA "
                         "(e.g. the folder printed by `nni-kws data synth`)")
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {path}")
    return path


def run_trial(arch: Mapping[str, Any], *, data: str | os.PathLike, preset: str, epochs: int,
              batch_size: int = 64, num_workers: int = 0, max_per_class: int | None = None, seed: int = 0,
              out_dir: str | os.PathLike | None = None, progress: bool = False, lut: str | None = None,
              model: Any = None, report: bool = True, **train_kw: Any) -> dict[str, float]:
    """Train ``arch`` (or the given frozen ``model``) on the folder ``data`` and return, and report
    to NNI when ``report``, ``{'default': val accuracy, **hardware costs}``.

    Intermediate results (``val_acc`` per epoch) are reported by
    :class:`~nni_kws.training.KwsModule`. Shared by the HPO trial and the multi-trial NAS evaluator.
    """
    import nni

    from nni_kws.data.datamodule import SpeechCommandsDataModule
    from nni_kws.nnictl.costs import arch_costs, space_by_name
    from nni_kws.space import build_model
    from nni_kws.training import fit, seed_everything

    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    seed_everything(seed)
    if model is None:
        model = build_model(arch, space_by_name(preset))
    dm = SpeechCommandsDataModule(data, batch_size=batch_size, num_workers=num_workers, seed=seed,
                                  max_per_class=max_per_class)
    metrics = fit(model, dm.train_dataloader(), dm.val_dataloader(), epochs=epochs, out_dir=out_dir,
                  progress=progress, report_to_nni=report, **train_kw)
    result = {"default": float(metrics["val_acc"]), **arch_costs(arch, preset, lut)}
    if out_dir is not None:
        from nni_kws.space import save_arch
        save_arch(arch, Path(out_dir) / "arch.json", preset=preset, metrics=result)
    if report:
        nni.report_final_result(result)
    _logger.info("final result: %s", result)
    return result


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m nni_kws.trial``."""
    p = argparse.ArgumentParser(prog="python -m nni_kws.trial", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="Speech Commands folder (default: $NNI_KWS_DATA)")
    p.add_argument("--preset", default="small",
                   help="space of the search-space file: a preset, or preset-frontend such as small-mfcc (default: small)")
    p.add_argument("--epochs", type=int, default=5, help="training epochs (ignored when the tuner sends TRIAL_BUDGET)")
    p.add_argument("--epochs-per-budget", type=float, default=1.0,
                   help="epochs per unit of Hyperband's TRIAL_BUDGET (default 1: R in the config = max epochs)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=0.05)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--max-per-class", type=int, help="cap clips per class (quick trials)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lut", help="latency lookup table for the cost model")
    p.add_argument("--arch", help="architecture JSON to train when run outside NNI")
    p.add_argument("--out", help="output folder (default: $NNI_OUTPUT_DIR, the trial folder)")
    p.add_argument("--progress", action="store_true", help="show Lightning's progress bar")
    darts = p.add_argument_group("--mode darts: a one-shot search per trial (tuned labels: lambda, target, ...)")
    darts.add_argument("--mode", choices=["train", "darts"], default="train",
                       help="train: the tuner's architecture; darts: search, then retrain the result (--epochs)")
    darts.add_argument("--search-epochs", type=int, default=5, help="one-shot search epochs (TRIAL_BUDGET sets them)")
    darts.add_argument("--strategy", default="darts", help="one-shot strategy: darts, gumbel, proxyless (default darts)")
    darts.add_argument("--resource", default="macs", help="penalised cost: macs, params, peak_activation_bytes, latency_ms")
    darts.add_argument("--target", type=float, help="budget of --resource unless the tuner sends 'target'")
    darts.add_argument("--lambda", dest="weight", type=float, default=1.0, help="penalty weight unless tuned")
    darts.add_argument("--form", default="hinge", help="penalty form: hinge, add, mul-log")
    return p


def _parameters(args: argparse.Namespace) -> dict[str, Any]:
    """The tuner's parameters; outside NNI (empty parameters) the ``--arch`` file or the space default."""
    import nni

    params = nni.get_next_parameter() or {}
    if params:
        return dict(params)
    from nni_kws.nnictl.costs import space_by_name
    from nni_kws.space import load_arch, space_choices
    if args.arch:
        return load_arch(args.arch)
    _logger.warning("no parameters from NNI and no --arch: training the first candidate of every label")
    return {label: values[0] for label, values in space_choices(space_by_name(args.preset)).items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one trial; a bad parameter or missing data is one error line and exit code 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        data = resolve_data(args.data)
        if args.mode == "darts":
            _run_darts(args, data)
            return 0
        arch, train, budget = split_parameters(_parameters(args), args.preset)
        epochs = args.epochs if budget is None else max(1, round(budget * args.epochs_per_budget))
        train.setdefault("learning_rate", args.learning_rate)
        batch_size = train.pop("batch_size", args.batch_size)
        _logger.info("trial: preset=%s epochs=%d arch=%s train=%s", args.preset, epochs, arch, train)
        run_trial(arch, data=data, preset=args.preset, epochs=epochs, batch_size=batch_size,
                  num_workers=args.workers, max_per_class=args.max_per_class, seed=args.seed,
                  out_dir=args.out or os.environ.get("NNI_OUTPUT_DIR"), progress=args.progress, lut=args.lut,
                  **train)
    except (ValueError, FileNotFoundError) as err:
        print(f"nni_kws.trial: error: invalid trial: {err}", file=sys.stderr)
        return 2
    return 0


def _run_darts(args: argparse.Namespace, data: Path) -> None:
    import nni

    from nni_kws.nnictl.darts_trial import run_darts_trial

    params = dict(nni.get_next_parameter() or {})
    budget = params.get(BUDGET_KEY)
    search_epochs = args.search_epochs if budget is None else max(1, round(float(budget) * args.epochs_per_budget))
    run_darts_trial(params, data=data, preset=args.preset, search_epochs=search_epochs, epochs=args.epochs,
                    resource=args.resource, target=args.target, weight=args.weight, form=args.form,
                    strategy=args.strategy, batch_size=args.batch_size, num_workers=args.workers,
                    max_per_class=args.max_per_class, seed=args.seed, out_dir=args.out or os.environ.get("NNI_OUTPUT_DIR"),
                    lut=args.lut, progress=args.progress, learning_rate=args.learning_rate)


if __name__ == "__main__":
    sys.exit(main())
