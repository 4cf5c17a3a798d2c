"""``nni-kws experiment``: multi-trial NAS with the web UI (``run``) and a pre-flight check of
``nnictl`` configs (``check``), since ``nnictl create`` (config v2) never validates ``classArgs``."""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

__all__ = ["register", "check_config"]

HW_TUNER = "KwsHardwareAware"  # builtinName in examples/nnictl/meta.yml


def check_config(path: str | Path) -> list[str]:
    """Check a ``nnictl`` config for nni-kws: valid YAML with known top-level keys, the tuner's and
    assessor's ``classArgs`` (with their registered ``ClassArgsValidator``), trial arguments that the
    trial's parser accepts, the search space against the trial's ``--preset``, and registered tuner and
    assessor names (nnictl accepts a typo, then hangs with no trials).

    Raises ``ValueError`` naming the first problem; returns warnings (e.g. a tuner not registered).
    Without ``--data`` trials use the synthesized default dataset, so that is no warning.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config not found: {path}")
    config = _load_yaml(path)
    warnings = _check_content(path, config)
    # last, so that a config's other problems are reported too before the tuner is registered
    for kind in ("tuner", "advisor", "assessor"):
        if (config.get(kind) or {}).get("name"):
            _check_registered(path, kind, config[kind]["name"])
    return warnings


def _check_content(path: Path, config: dict[str, Any]) -> list[str]:
    from nni.tools.package_utils import config_manager
    from nni.tools.package_utils.tuner_factory import create_builtin_class_instance, create_validator_instance

    from nni_kws.data.labels import NUM_CLASSES, class_names, dataset_keywords
    from nni_kws.space import space_by_name, space_choices

    from .train_trial import TRAIN_PARAMS
    from .tuner import HardwareAwareClassArgsValidator

    tuner = config.get("tuner") or config.get("advisor") or {}
    warnings: list[str] = []
    assessor = config.get("assessor") or {}
    if assessor.get("name"):
        validator = create_validator_instance("assessors", assessor["name"])
        try:
            if validator is not None:
                validator.validate_class_args(**(assessor.get("classArgs") or {}))
        except Exception as err:  # schema.SchemaError, ValueError, TypeError...
            raise ValueError(f"{path}: assessor {assessor['name']} classArgs: {err}") from None
    if tuner.get("name"):
        validator = (HardwareAwareClassArgsValidator() if tuner["name"] == HW_TUNER
                     else create_validator_instance("tuners", tuner["name"]))
        try:
            if validator is not None:
                validator.validate_class_args(**(tuner.get("classArgs") or {}))
            elif config_manager.get_algo_meta(tuner["name"]) is not None:  # e.g. TPE has no validator
                create_builtin_class_instance(tuner["name"], tuner.get("classArgs"), "tuners")
        except Exception as err:  # schema.SchemaError, ValueError, TypeError...
            raise ValueError(f"{path}: tuner {tuner['name']} classArgs: {err}") from None
    ts = config.get("trainingService") or {}
    ts = ts[0] if isinstance(ts, list) else ts
    roles = ts.get("taskRoles", []) + [ts[r] for r in ("worker", "master", "ps") if isinstance(ts.get(r), dict)]
    command = config.get("trialCommand") or " ".join(r.get("command", "") for r in roles)  # Kubernetes: per role
    match = re.search(r"--preset[= ](\S+)", command)
    preset = match.group(1) if match else "small"
    if "nni_kws.trial" not in command:
        return warnings + [f"trialCommand does not run nni_kws.trial: {command!r}"]
    trial_args = _check_trial_arguments(path, command)
    data_dir = None  # the trials' data folder, where this machine has it
    if ts.get("platform", "local") == "local":  # elsewhere the paths name the remote machine's files
        code_dir = path.parent / config.get("trialCodeDirectory", ".")
        for option in ("data", "lut", "arch"):
            value = getattr(trial_args, option, None)
            if value and not (code_dir / Path(value).expanduser()).exists():
                raise FileNotFoundError(f"{path}: trialCommand --{option} {value} not found (paths are relative to "
                                        f"trialCodeDirectory, {code_dir.resolve()})")
        data_dir = code_dir / Path(trial_args.data).expanduser() if trial_args.data else None
    if "searchSpaceFile" in config:
        space_file = (path.parent / config["searchSpaceFile"]).resolve()
        if not space_file.is_file():
            raise FileNotFoundError(f"{path}: searchSpaceFile not found: {space_file}")
        search_space = json.loads(space_file.read_text())
    else:
        search_space = config.get("searchSpace") or {}
    choices = space_choices(space_by_name(preset))
    if re.search(r"--mode[= ]darts", command):
        from .darts_trial import DARTS_PARAMS
        unknown = sorted(set(search_space) - set(DARTS_PARAMS))
        if unknown:
            raise ValueError(f"{path}: label {unknown[0]!r} is not tunable in --mode darts ({', '.join(DARTS_PARAMS)})")
        return warnings
    for label, spec in search_space.items():
        if label in TRAIN_PARAMS:
            continue
        if label not in choices:
            raise ValueError(f"{path}: search-space label {label!r} is not in the {preset!r} space (--preset)")
        bad = [v for v in spec.get("_value", []) if v not in choices[label]]
        if spec.get("_type") != "choice" or bad:
            raise ValueError(f"{path}: label {label!r} must be a choice among {choices[label]}, got {spec}")
    missing = sorted(set(choices) - set(search_space))
    if missing:
        raise ValueError(f"{path}: search space lacks label {missing[0]!r} of the {preset!r} space")
    classargs = tuner.get("classArgs") or {}
    if tuner.get("name") == HW_TUNER and classargs.get("preset", "small") != preset:
        raise ValueError(f"{path}: KwsHardwareAware preset {classargs.get('preset', 'small')!r} "
                         f"differs from the trial's --preset {preset!r}")
    if tuner.get("name") == HW_TUNER and data_dir is not None:  # the budgets price the trials' classifier
        classes, priced = len(class_names(dataset_keywords(data_dir))), classargs.get("num_classes", NUM_CLASSES)
        if priced != classes:
            raise ValueError(f"{path}: KwsHardwareAware prices a {priced}-class classifier, the trials' --data "
                             f"{trial_args.data} has {classes} classes; set classArgs.num_classes: {classes}")
    return warnings


def _load_yaml(path: Path) -> dict[str, Any]:
    """The config as a mapping; broken YAML or an unknown top-level key is a one-line ``ValueError``."""
    from nni.experiment.config import ExperimentConfig

    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        raise ValueError(f"{path}: not valid YAML{at} ({getattr(err, 'problem', None) or err})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: an nnictl config is a YAML mapping, got a {type(config).__name__}")
    names = [f.name for f in dataclasses.fields(ExperimentConfig)]
    known = {*names, *(re.sub(r"_(\w)", lambda m: m.group(1).upper(), n) for n in names)}
    for key in config:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(k for k in known if "_" not in k), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{path}: unknown top-level key {key!r}{hint}")
    return config


def _check_registered(path: Path, kind: str, name: str) -> None:
    """nnictl accepts an unregistered tuner or assessor name, then hangs with no trials."""
    from nni.tools.package_utils import config_manager

    if config_manager.get_algo_meta(name) is None:
        hint = " (run: nnictl algo register --meta examples/nnictl/meta.yml)" if name == HW_TUNER else ""
        raise ValueError(f"{path}: {kind} {name!r} is not registered with nnictl{hint}")


def _check_trial_arguments(path: Path, command: str) -> argparse.Namespace:
    """Parse the trial's arguments with the trial's own parser (``--epochs zero`` fails every trial)."""
    from .trial import build_parser

    try:
        words = shlex.split(command)
    except ValueError as err:
        raise ValueError(f"{path}: trialCommand cannot be parsed ({err})") from None
    start = next(i for i, w in enumerate(words) if "nni_kws.trial" in w) + 1
    args = []
    for word in words[start:]:
        if word in ("&&", "||", ";", "|") or word.endswith(";"):
            break
        args.append(word)

    def error(message: str) -> None:
        raise ValueError(f"{path}: trialCommand: {message}")

    parser = build_parser()
    parser.error = error  # type: ignore[method-assign]  # argparse would print usage and exit
    return parser.parse_args(args)


def _run(args: argparse.Namespace) -> int:
    from nni_kws.signals import StopRequested, exit_code, stop_on_signals

    from .experiment import run_nas_experiment
    from .train_trial import resolve_data

    try:
        with stop_on_signals():  # SIGTERM as well as Ctrl-C stops the NNI manager before the process ends
            results = run_nas_experiment(
                resolve_data(args.data), preset=args.preset, strategy=args.strategy, max_trials=args.trials,
                concurrency=args.concurrency, epochs=args.epochs, budgets=_budgets(args.budget), port=args.port,
                seed=args.seed, lut=args.lut, batch_size=args.batch_size, max_per_class=args.max_per_class,
                experiment_dir=args.experiment_dir, top_k=args.top_k, out=args.out, keep_ui=args.keep_ui)
    except (StopRequested, KeyboardInterrupt) as stop:
        code = exit_code(stop) if isinstance(stop, StopRequested) else 130
        print(f"nni-kws experiment run: interrupted (exit {code}); the experiment was stopped, no top models written")
        return code
    print(json.dumps(results, indent=2))
    return 0


def _budgets(items: list[str] | None) -> dict[str, float]:
    from nni_kws.cost.budgets import parse_budgets
    return parse_budgets(items or [])


def _check(args: argparse.Namespace) -> int:
    for warning in check_config(args.config):
        print(f"warning: {warning}")
    print(f"{args.config}: ok")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("experiment", help="multi-trial NAS with NNI's web UI; check nnictl configs")
    sub = parser.add_subparsers(dest="experiment_command", metavar="ACTION", required=True)

    run = sub.add_parser("run", help="multi-trial NAS (NasExperiment) with the web UI on --port")
    run.add_argument("--data", help="Speech Commands folder (default: $NNI_KWS_DATA, else the synthesized default set)")
    run.add_argument("--preset", default="small", help="space: preset or preset-frontend (default: small)")
    run.add_argument("--strategy", default="evolution", choices=["random", "evolution", "tpe", "grid"])
    run.add_argument("--trials", type=int, default=20, help="architectures to train")
    run.add_argument("--concurrency", type=int, default=1)
    run.add_argument("--epochs", type=int, default=3, help="training epochs per trial")
    run.add_argument("--budget", action="append", metavar="NAME=LIMIT",
                     help="hardware budget, repeatable: params, macs, peak_act_kb, latency_ms (with --lut)")
    run.add_argument("--lut", help="latency table (nni-kws profile) for latency_ms")
    run.add_argument("--port", type=int, default=8080, help="web UI port on 127.0.0.1 (default 8080)")
    run.add_argument("--seed", type=int)
    run.add_argument("--batch-size", type=int, default=64)
    run.add_argument("--max-per-class", type=int, help="cap clips per class in every trial")
    run.add_argument("--experiment-dir", help="instead of ~/nni-experiments")
    run.add_argument("--top-k", type=int, default=5)
    run.add_argument("--out", help="folder for top_models.json")
    run.add_argument("--keep-ui", action="store_true", help="keep the web UI up after the search, until Ctrl-C")
    run.set_defaults(func=_run)

    check = sub.add_parser("check", help="check an nnictl config (classArgs, search space vs --preset)")
    check.add_argument("config")
    check.set_defaults(func=_check)
