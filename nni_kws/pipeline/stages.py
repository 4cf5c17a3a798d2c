"""The stages of a run: search → retrain → quantize → report, resumable stage by stage.

Each stage writes everything it produces under ``<out>/<stage>/`` and, last, a ``result.json``; a
stage whose ``result.json`` exists is complete and is skipped on ``resume``. An interrupted stage
resumes from its per-epoch checkpoint (search: ``run_search(resume=True)``; train: Lightning's
``last.ckpt``; quantize restarts). The run's options are stored in ``<out>/config.json`` so
``--resume`` (or a later stage in the same folder) reuses them.

The report stage always runs again (it is cheap) and writes ``results.json``, ``report.md`` and
``pareto.png`` at the top of ``<out>`` (:mod:`nni_kws.pipeline.results`).
"""
from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from nni_kws.baselines import build_baseline
from nni_kws.cost import CostModel, LatencyTable
from nni_kws.cost.budgets import OverBudget, describe_over_budget, metric_costs, over_budget, with_kb
from nni_kws.cost.counter import count_costs
from nni_kws.cost.latency import RUN_TABLE
from nni_kws.files import jsonable, load_state_dict, read_json, save_torch, write_json
from nni_kws.quant import quantize_model
from nni_kws.search.oneshot import WEIGHTS_ONLY, run_search
from nni_kws.search.penalty import ResourcePenalty
from nni_kws.search.recalibrate import calibration_batches, inherited_model
from nni_kws.signals import check_stop
from nni_kws.space import build_model, save_arch, validate_arch
from nni_kws.training import accuracy, derived_seed, fit, reseed_loaders, seed_everything, torch_threads

from .config import (
    CONFIG,
    OPTIONS,
    RESULT,
    STAGES,
    PipelineConfig,
    check_feasible,
    check_inputs,
    run_classes,
    run_space,
    stage_options,
)
from .data import make_data_module
from .distill import distillation
from .lock import run_folder_lock
from .results import assemble_results, memory_bits, quant_summary
from .rundir import check_stage_options, prepare_run_folder, stage_done

__all__ = ["Pipeline", "run_pipeline"]

log = logging.getLogger(__name__)


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Pipeline:
    """One run folder: lazily built data, space and cost model shared by the stages.

    ``data_module`` may be passed in to share loaded (cached) audio between the runs of a sweep.
    """

    def __init__(self, cfg: PipelineConfig, *, data_module: Any = None) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out)
        self._dm = data_module
        self._data_info: dict[str, Any] | None = None
        self._lut: Any = None
        self._cost_model: CostModel | None = None
        self._current_stage: str | None = None
        self.timings: dict[str, float] = {}

    # ---- shared resources -------------------------------------------------------------------
    @property
    def data_module(self) -> Any:
        """The :class:`SpeechCommandsDataModule` (synthesizing the default data on first use)."""
        if self._dm is None:
            start = time.perf_counter()
            self._dm = make_data_module(self.cfg)
            self.timings["data"] = self.timings.get("data", 0.0) + time.perf_counter() - start
        if tuple(self._dm.classes) != self.classes:  # a sweep's shared data module made for other options
            raise ValueError(f"the data's classes ({', '.join(self._dm.classes)}) are not the {self.num_classes} "
                             f"this run's options give ({', '.join(self.classes)})")
        return self._dm

    def loader(self, split: str, dataset: Dataset | None = None) -> Any:
        """A train/val/test/real_test DataLoader (building the split, and timing it, on first use);
        ``dataset`` replaces the split's own (the training set with a teacher's targets).

        Its shuffling and its dataset's augmentation restart from ``(seed, stage, split)``, so a stage's
        data does not depend on what an earlier stage in this process drew.
        """
        dm = self.data_module
        start = time.perf_counter()
        result = getattr(dm, f"{split}_dataloader")() if dataset is None else dm.loader(dataset, split == "train")
        reseed_loaders([result], derived_seed(self.cfg.seed, self._current_stage or "", split))
        self.timings["data"] = self.timings.get("data", 0.0) + time.perf_counter() - start
        return result

    @property
    def has_real_test(self) -> bool:
        return getattr(self.data_module, "real_test_root", None) is not None

    def data_info(self, include_real: bool = True) -> dict[str, Any]:
        """Where the data came from and the split sizes (for results.json); ``include_real``
        counts the real test set (loading it, when not loaded yet)."""
        if self._data_info is None or (include_real and "n_real_test" not in self._data_info
                                       and self.data_module.real_test_root):
            dm = self.data_module
            info: dict[str, Any] = {"root": str(dm.root), "synthetic": self.cfg.data is None,
                                    "train_list": self.cfg.train_list, "test_list": self.cfg.test_list,
                                    "real_test_root": str(dm.real_test_root) if dm.real_test_root else None}
            for key, subset in (("n_train", "training"), ("n_val", "validation"), ("n_test", "testing")):
                info[key] = len(dm.dataset(subset))
            if dm.real_test_root and include_real:
                info["n_real_test"] = len(dm.dataset("real_test"))
            self._data_info = info
        return self._data_info

    def space_identity(self) -> dict[str, Any]:
        """The run's space as ``arch.json`` names it (:data:`~nni_kws.space.SPACE_KEYS`)."""
        return {"preset": self.cfg.preset, "frontend": self.cfg.frontend, "num_classes": self.num_classes,
                "coarse": self.cfg.coarse()}

    def space(self) -> nn.Module:
        """A fresh search space of the configured preset and front end (strategies mutate theirs); it loads no data."""
        return run_space(self.cfg)

    @functools.cached_property
    def classes(self) -> tuple[str, ...]:
        """The run's classes, from the options, not the data (read once: a --data folder's manifest names them)."""
        return run_classes(self.cfg)

    @property
    def num_classes(self) -> int:
        """Classifier outputs: 12 for Speech Commands, more or fewer for --keywords."""
        return len(self.classes)

    def latency_table(self) -> LatencyTable:
        """The latency look-up table: ``cfg.latency_lut``, else measured once into ``<out>/profile/``.

        Measured as :data:`~nni_kws.cost.latency.RUN_TABLE` says (single-thread CPU time per call,
        which background load on a shared machine does not inflate; its accuracy is benchmarked by
        ``benchmarks/cost_model.py --run-table``); ``nni-kws profile`` makes wall-clock tables for a device.
        """
        if self._lut is None:
            path = Path(self.cfg.latency_lut) if self.cfg.latency_lut else self.out / "profile" / "latency.json"
            if path.is_file() or self.cfg.latency_lut:
                self._lut = LatencyTable.load(path)
            else:
                start = time.perf_counter()
                log.info("measuring a latency table of the %s space (%s front end)", self.cfg.preset, self.cfg.frontend)
                self._lut = LatencyTable.measure(self.space(), **RUN_TABLE, progress=False)
                self._lut.save(path)
                write_json(path.parent / RESULT, {"entries": len(self._lut.entries), **RUN_TABLE,
                                                  "seconds": time.perf_counter() - start})
        return self._lut

    def cost_model(self) -> CostModel:
        """The :class:`CostModel` of the run's space with its latency table, built once (it freezes one
        architecture per block configuration) and shared by the budget checks, the search and the costs."""
        if self._cost_model is None:
            self._cost_model = CostModel(self.space(), lut=self.latency_table(), fallback="macs")
        return self._cost_model

    def costs(self, arch: Mapping[str, Any], act_bits: int = 32, input_bits: int | None = None) -> dict[str, float]:
        """Exact hardware costs of ``arch`` (activations of ``act_bits``, the waveform of ``input_bits``, default the
        same), plus weights and peak activations in kB."""
        costs = self.cost_model().exact(dict(arch), act_bits=act_bits, input_bits=input_bits)
        return with_kb({k: float(v) for k, v in costs.items() if v is not None})

    def evaluate(self, model: nn.Module, *, real: bool = True) -> dict[str, float | None]:
        """Accuracy on the (synthesized) test split and, when available, on the real test set."""
        model = model.to(_device())
        res: dict[str, float | None] = {"test_acc": accuracy(model, self.loader("test"))}
        res["real_test_acc"] = accuracy(model, self.loader("real_test")) if real and self.has_real_test else None
        return res

    # ---- bookkeeping -------------------------------------------------------------------------
    def prepare(self, stages: Sequence[str], *, resume: bool, overwrite: bool) -> None:
        """Check the run folder against ``stages`` (:func:`~nni_kws.pipeline.rundir.prepare_run_folder`) and
        store the config."""
        prepare_run_folder(self.out, stages, {s: stage_options(self.cfg, s) for s in stages if s != "report"},
                           resume=resume, overwrite=overwrite)
        write_json(self.out / CONFIG, self.cfg.to_json())

    def _stage(self, stage: str, body: Callable[[Path], dict[str, Any]], *, resume: bool,
               arch: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Run ``body(stage_dir)`` unless the stage is complete; store its result with its options and wall time.

        The stage's random state starts from ``(seed, stage)`` (and each epoch's from ``(seed, stage,
        epoch)``), so it is the same whether earlier stages ran in this process or not.
        """
        check_stop()  # a signal that arrived while a trainer deferred it, after its last check
        check_stage_options(self.out, stage, stage_options(self.cfg, stage, arch))  # made with other options?
        done = stage_done(self.out, stage)
        if done is not None and resume:
            log.info("stage %s: already complete in %s, skipped", stage, self.out / stage)
            return done
        stage_dir = self.out / stage
        options = stage_options(self.cfg, stage, arch)
        write_json(stage_dir / OPTIONS, options)
        self._current_stage = stage
        seed_everything(derived_seed(self.cfg.seed, stage))
        log.info("stage %s: starting (outputs in %s)", stage, stage_dir)
        start = time.perf_counter()
        try:
            result = body(stage_dir)
        finally:
            self._current_stage = None
        result["options"] = options
        result["seconds"] = time.perf_counter() - start
        write_json(stage_dir / RESULT, result)
        log.info("stage %s: done in %.1f s", stage, result["seconds"])
        check_stop()
        return read_json(stage_dir / RESULT)

    # ---- stages ------------------------------------------------------------------------------
    def search(self, *, resume: bool = False) -> dict[str, Any]:
        """Stage 1: one-shot hardware-aware search; writes ``search/arch.json`` and the inherited weights.

        A searched architecture over a budget is recorded (``over_budget`` in ``result.json``) and, unless
        ``allow_over_budget``, stops the run with :class:`OverBudget` after the stage is stored.
        """
        result = self._stage("search", lambda d: self._search(d, resume), resume=resume)
        if result.get("over_budget"):
            text = describe_over_budget(result["over_budget"])
            if not self.cfg.allow_over_budget:
                lever = "the search epochs" if self.cfg.strategy in WEIGHTS_ONLY else "--lambda or the search epochs"
                raise OverBudget(f"the searched architecture is over budget: {text} ({self.out / 'search' / RESULT}); "
                                 f"raise {lever}, or continue with --resume --allow-over-budget")
            log.warning("the searched architecture is over budget: %s (accepted: --allow-over-budget)", text)
        return result

    def penalties(self) -> list[ResourcePenalty]:
        """One :class:`ResourcePenalty` per budget that is set (weight λ, the configured form)."""
        return [ResourcePenalty(resource, target, self.cfg.lam, self.cfg.penalty_form)
                for resource, target in self.cfg.penalty_targets().items()]

    def strategy_kwargs(self) -> dict[str, Any]:
        """Schedule options of the differentiable strategies (``random`` trains weights only)."""
        if self.cfg.strategy in WEIGHTS_ONLY:
            return {}
        return {"warmup_epochs": self.cfg.warmup(), "arch_every": self.cfg.arch_every}

    def finalists(self) -> dict[str, Any] | None:
        """:func:`~nni_kws.search.run_search`'s finalist options (None: none), with fold ``i``'s loaders for
        training ``i`` under ``finalist_folds``."""
        cfg, k = self.cfg, self.cfg.finalist_count()
        if not k:
            return None
        options: dict[str, Any] = {"k": k, "epochs": cfg.finalist_epochs, "seeds": cfg.finalist_seeds}
        if cfg.finalist_folds:
            options["folds"] = [(self.loader("train", fold.dataset("training")),
                                 self.loader("val", fold.dataset("validation")))
                                for fold in self.data_module.val_folds(cfg.finalist_seeds)]
        return options

    def _search(self, stage_dir: Path, resume: bool) -> dict[str, Any]:
        cfg, space = self.cfg, self.space()
        check_feasible(cfg, self.cost_model())  # latency budgets need the table, measured by now
        result = run_search(space, self.loader("train"), self.loader("val"), strategy=cfg.strategy,
                            epochs=cfg.supernet_epochs(), penalties=self.penalties(), cost_model=self.cost_model(),
                            out_dir=stage_dir, seed=cfg.seed, resume=resume, progress=cfg.progress,
                            learning_rate=cfg.lr, arc_learning_rate=cfg.arc_lr, calib_batches=cfg.calib_batches,
                            split=cfg.split_choice(),
                            finalists=self.finalists(),
                            strategy_kwargs=self.strategy_kwargs())
        arch = validate_arch(self.space(), result.arch)
        costs = self.costs(arch)
        budgets, metrics = cfg.budgets(), metric_costs(costs)
        over = {name: {"limit": budgets[name], "value": metrics[name]} for name in over_budget(metrics, budgets)}
        save_arch(arch, stage_dir / "arch.json", **self.space_identity(), costs=costs, **result.meta)
        # inherited weights with BatchNorm statistics of this very path (the supernet's are the mixture's)
        inherited = inherited_model(self.space(), arch, result.supernet,
                                    calibration_batches(self.loader("train"), cfg.calib_batches))
        save_torch(inherited.state_dict(), stage_dir / "init_weights.pt")
        acc = self.evaluate(inherited, real=False)
        return {"arch": arch, "costs": costs, **result.meta, "budgets": budgets, "over_budget": over,
                "probs": result.probs, "calib_batches": cfg.calib_batches,
                "history": result.history, **acc, "data": self.data_info(include_real=False)}

    def train(self, arch: Mapping[str, Any] | None = None, *, baseline: str | None = None,
              resume: bool = False) -> dict[str, Any]:
        """Stage 2: train the frozen architecture (``arch``, else the searched one) and evaluate it;
        ``baseline``: train that hand-designed peer (:mod:`nni_kws.baselines`) instead, with the same recipe.
        With ``cfg.distill`` > 0 the training is distilled from the real-speech teacher (:mod:`.distill`)."""
        if baseline is not None:
            build_baseline(baseline)  # an unknown name fails before anything runs
            return self._stage("train", lambda d: self._train(d, None, resume, baseline), resume=resume,
                               arch={"baseline": baseline})
        if arch is None:
            searched = stage_done(self.out, "search")
            if searched is None:
                raise FileNotFoundError(f"no searched architecture in {self.out / 'search'}; run `nni-kws search` "
                                        "first or pass --arch FILE")
            arch = searched["arch"]
        arch = validate_arch(self.space(), arch)
        return self._stage("train", lambda d: self._train(d, arch, resume), resume=resume, arch=arch)

    def _initial_model(self, arch: dict[str, Any]) -> nn.Module:
        model = build_model(arch, self.space())
        if self.cfg.init == "supernet":
            searched = stage_done(self.out, "search")
            weights = self.out / "search" / "init_weights.pt"
            if searched is None or not weights.is_file():
                raise FileNotFoundError(f"--init supernet needs a completed search in {self.out / 'search'}")
            if searched["arch"] != arch:
                raise ValueError("--init supernet needs the searched architecture; this --arch differs from "
                                 f"{self.out / 'search' / 'arch.json'}")
            load_state_dict(model, weights, hint=f"delete {self.out / 'search'} and run again with --resume")
        return model

    def _train(self, stage_dir: Path, arch: dict[str, Any] | None, resume: bool,
               baseline: str | None = None) -> dict[str, Any]:
        cfg = self.cfg
        if baseline is not None:
            model = build_baseline(baseline, num_classes=self.num_classes)
        else:
            save_arch(arch, stage_dir / "arch.json", **self.space_identity())
            model = self._initial_model(arch)
        weights = stage_dir / "model.pt"
        targets, distilled = distillation(cfg, self.data_module, stage_dir)
        if resume and weights.is_file() and (stage_dir / "train_metrics.json").is_file():  # interrupted in evaluation
            load_state_dict(model, weights, hint=f"delete it to rebuild it from {stage_dir / 'checkpoints'}")
            metrics = read_json(stage_dir / "train_metrics.json")
        else:
            metrics = fit(model, self.loader("train", targets), self.loader("val"), epochs=cfg.train_epochs,
                          out_dir=stage_dir, resume=resume, progress=cfg.progress, learning_rate=cfg.lr,
                          seed=cfg.seed, stage="train", distill_weight=cfg.distill,
                          distill_temperature=cfg.distill_temperature)
            save_torch(model.state_dict(), weights)
        if baseline is not None:  # same counter and definitions as the space's cost model (latency: no table)
            costs = with_kb({k: float(v) for k, v in count_costs(model.cpu()).items() if v is not None})
        else:
            costs = self.costs(arch)
        acc = self.evaluate(model)
        peer = {"baseline": baseline, "num_classes": self.num_classes} if baseline is not None else {}
        return {"arch": arch, **peer, "costs": costs, "init": "scratch" if peer else cfg.init,
                "epochs": cfg.train_epochs, "distillation": distilled, "val_acc": metrics.get("val_acc"), **acc,
                "data": self.data_info()}

    def trained_model(self) -> tuple[dict[str, Any], nn.Module]:
        """The architecture and float weights of the completed train stage."""
        trained = stage_done(self.out, "train")
        if trained is None:
            raise FileNotFoundError(f"no trained model in {self.out / 'train'}; run `nni-kws train` first")
        if trained.get("baseline"):
            raise ValueError(f"{self.out / 'train'} holds the baseline {trained['baseline']!r}; the pipeline "
                             "quantizes searched architectures only")
        model = build_model(trained["arch"], self.space())  # validates the stored arch against the space
        load_state_dict(model, self.out / "train" / "model.pt",
                        hint=f"delete {self.out / 'train'} and run again with --resume")
        return trained["arch"], model

    def quantize(self, *, resume: bool = False) -> dict[str, Any]:
        """Stage 3: quantization-aware fine-tuning with learned (or fixed) bit-widths, then evaluation."""
        arch = (stage_done(self.out, "train") or {}).get("arch")
        return self._stage("quantize", lambda d: self._quantize(d, resume), resume=resume, arch=arch)

    def _quantize(self, stage_dir: Path, resume: bool) -> dict[str, Any]:
        """Fine-tune with quantizers (an interrupted quantization resumes from its per-epoch checkpoint)."""
        cfg = self.cfg
        arch, model = self.trained_model()
        trained = stage_done(self.out, "train") or {}
        known = {"val": trained.get("val_acc"), "test": trained.get("test_acc"),
                 "real_test": trained.get("real_test_acc")}
        extra = {"real_test": self.loader("real_test")} if self.has_real_test else {}
        learned = cfg.quant_method == "trained"  # bit budgets only steer learned bit-widths; 0 switches one off
        budget = {k: v if learned and v else None for k, v in (("weight_budget_bits", cfg.weight_budget_bits),
                                                               ("act_budget_bits", cfg.act_budget_bits))}
        kwargs: dict[str, Any] = dict(method=cfg.quant_method, bits=cfg.bits, **budget, epochs=cfg.quant_epochs,
                                      qparam_lr_scale=cfg.qparam_lr_scale,
                                      strict_budget=cfg.strict_budget, resume=resume, out_dir=stage_dir,
                                      test_loader=self.loader("test"), extra_loaders=extra, progress=cfg.progress,
                                      float_accuracy={k: v for k, v in known.items() if v is not None})
        qres = quantize_model(model.to(_device()), self.loader("train"), self.loader("val"), **kwargs)
        report = jsonable(qres.report)
        return {"arch": arch, "method": cfg.quant_method, "onnx": str(qres.onnx_path) if qres.onnx_path else None,
                **quant_summary(report, self.costs(arch, **memory_bits(report)))}

    def report(self) -> dict[str, Any]:
        """Stage 4: gather the stages into ``results.json``, ``report.md`` and ``pareto.png``."""
        stages = {s: stage_done(self.out, s) for s in STAGES[:-1]}
        data = next((res["data"] for res in (stages["train"], stages["search"]) if res and res.get("data")), None)
        included = {"data_loading": self.timings.get("data"),
                    "latency_profile": (stage_done(self.out, "profile") or {}).get("seconds")}
        return assemble_results(self.cfg, stages, data or self.data_info(), included, self.out)


def run_pipeline(cfg: PipelineConfig, stages: Iterable[str] = STAGES, *, resume: bool = False,
                 overwrite: bool = False, arch: Mapping[str, Any] | None = None,
                 data_module: Any = None, baseline: str | None = None) -> dict[str, Any]:
    """Run ``stages`` (in order) in ``cfg.out``; returns ``{stage: result}`` (the report's results.json dict).

    ``arch`` (a validated dict) makes the train stage use it instead of the searched architecture;
    ``baseline`` (a name of :data:`nni_kws.baselines.BASELINES`) makes it train that peer.
    """
    stages = [s for s in STAGES if s in set(stages)]
    check_inputs(cfg)
    pipe = Pipeline(cfg, data_module=data_module)
    with run_folder_lock(cfg.out):
        try:
            pipe.prepare(stages, resume=resume, overwrite=overwrite)
        except OSError as err:
            raise ValueError(f"cannot write run folder {cfg.out}: {err.strerror or err}") from None
        with torch_threads(cfg.threads):
            return _run_stages(pipe, stages, resume, arch, baseline)


def _run_stages(pipe: Pipeline, stages: Sequence[str], resume: bool, arch: Mapping[str, Any] | None,
                baseline: str | None = None) -> dict[str, Any]:
    cfg = pipe.cfg
    total = time.perf_counter()
    out: dict[str, Any] = {}
    for i, stage in enumerate(stages, 1):
        log.info("=== [%d/%d] %s (elapsed %.0f s) ===", i, len(stages), stage, time.perf_counter() - total)
        if stage == "search":
            out[stage] = pipe.search(resume=resume)
        elif stage == "train":
            out[stage] = pipe.train(arch, baseline=baseline, resume=resume)
        elif stage == "quantize":
            out[stage] = pipe.quantize(resume=resume)
        else:
            out[stage] = pipe.report()
    log.info("=== done in %.0f s: %s ===", time.perf_counter() - total, cfg.out)
    return out
