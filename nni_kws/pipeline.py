"""The end-to-end job: search → retrain → quantize → report, resumable stage by stage.

Each stage writes everything it produces under ``<out>/<stage>/`` and, last, a ``result.json``; a
stage whose ``result.json`` exists is complete and is skipped on ``resume``. An interrupted stage
resumes from its per-epoch checkpoint (search: ``run_search(resume=True)``; train: Lightning's
``last.ckpt``; quantize: the quantizer's own checkpoint when it keeps one). The run's options are
stored in ``<out>/config.json`` so ``--resume`` (or a later stage in the same folder) reuses them.

The report stage always runs again (it is cheap) and writes ``results.json``, ``report.md`` and
``pareto.png`` at the top of ``<out>``. :func:`run_sweep` repeats search + retrain over λ (or a
budget) and front ends and writes ``sweep.json``, ``sweep.md`` and a Pareto plot.
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn

from .space import build_space, save_arch, validate_arch
from .training import accuracy, fit, seed_everything

__all__ = ["STAGES", "IDENTITY_FIELDS", "PipelineConfig", "Pipeline", "SweepPlan", "check_inputs",
           "default_real_test_root", "load_config", "make_data_module", "run_pipeline", "run_sweep", "stage_done"]

log = logging.getLogger(__name__)

STAGES: tuple[str, ...] = ("search", "train", "quantize", "report")
#: Options that define what a run folder holds: changing one needs another ``--out``.
IDENTITY_FIELDS: tuple[str, ...] = ("data", "speakers", "preset", "frontend", "seed", "max_per_class")
RESULT = "result.json"
CONFIG = "config.json"
# cost key -> ResourcePenalty resource name and the factor from the CLI unit to the cost unit
_BUDGETS: dict[str, tuple[str, float]] = {
    "max_macs": ("macs", 1.0), "max_params": ("params", 1.0),
    "max_peak_kb": ("peak_activation_bytes", 1000.0), "max_latency_ms": ("latency_ms", 1.0),
}


@dataclass
class PipelineConfig:
    """Every option of ``nni-kws run`` (and of ``search``/``train``/``sweep``), with the demo's defaults.

    The defaults are chosen so that the whole job on the synthesized data, synthesis included, takes
    well under 10 minutes on 2 CPU cores: 4 min 05 s measured on a shared 2-core machine (load 3-4),
    search 119 s, retraining 79 s, quantization 37 s. On a GPU the same run is faster.
    """

    out: str = "runs/demo"
    data: str | None = None  # a local Speech Commands copy; None: the synthesized default dataset
    speakers: int | None = None  # synthesized dataset: number of voices (None: the data module's default)
    real_test: str | None = "auto"  # real v2 test folder; "auto": <repo>/../shared/data/gsc-v2-test; None: skip
    max_per_class: int | None = None
    preset: str = "small"
    frontend: str = "raw"
    strategy: str = "darts"
    max_macs: float | None = 7e6  # about the middle of the 'small' raw-audio space (5.0M .. 11.6M); 0: none
    max_params: float | None = None
    max_peak_kb: float | None = None
    max_latency_ms: float | None = None
    lam: float = 1.0
    penalty_form: str = "hinge"
    search_epochs: int = 8
    train_epochs: int = 40
    quant_epochs: int = 6
    init: str = "scratch"  # 'scratch' or 'supernet'
    lr: float = 0.2  # SGD-Nesterov, cosine (the ICPR recipe); weights of the supernet and of the retrained net
    arc_lr: float = 0.03  # Adam step of the architecture logits (large: the demo's search is short)
    batch_size: int = 64
    quant_method: str = "trained"
    bits: int = 8
    weight_budget_bits: float | None = 4.0
    act_budget_bits: float | None = 4.0
    latency_lut: str | None = None  # a LatencyTable JSON (`nni-kws profile`); None: measure one (seconds)
    seed: int = 0
    workers: int = 0
    # torch CPU threads (0: torch's default). One: these small 1-D convs gain little from intra-op
    # threads, and lose several-fold when the cores are shared (measured on a busy 2-core machine).
    threads: int = 1
    progress: bool = True

    def budgets(self) -> dict[str, float]:
        """``{resource: target}`` in the cost model's units for the budgets that are set."""
        return {res: float(getattr(self, name)) * factor for name, (res, factor) in _BUDGETS.items()
                if getattr(self, name) is not None and float(getattr(self, name)) > 0}

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(out: str | Path, overrides: Mapping[str, Any], *, base: PipelineConfig | None = None) -> PipelineConfig:
    """Defaults ⊕ the stored ``<out>/config.json`` ⊕ ``overrides`` (options given on the command line).

    A stored identity option (data, preset, front end, seed, ...) that ``overrides`` changes is an
    error: the stages already in ``out`` were made with the stored one.
    """
    base = base or PipelineConfig()
    known = {f.name for f in dataclasses.fields(PipelineConfig)}
    stored_path = Path(out) / CONFIG
    stored: dict[str, Any] = {}
    if stored_path.is_file():
        stored = {k: v for k, v in json.loads(stored_path.read_text()).items() if k in known}
        for name in IDENTITY_FIELDS:
            if name in overrides and name in stored and overrides[name] != stored[name]:
                raise ValueError(f"{out} was made with {name}={stored[name]!r}, not {overrides[name]!r}; "
                                 "use another --out (or --overwrite)")
    values = {**dataclasses.asdict(base), **stored, **{k: v for k, v in overrides.items() if k in known}}
    values["out"] = str(out)
    return PipelineConfig(**values)


def default_real_test_root() -> Path | None:
    """The real Speech Commands v2 test folder next to the repository, if present."""
    repo = Path(__file__).resolve().parents[1]
    root = repo.parent / "shared" / "data" / "gsc-v2-test"
    return root if root.is_dir() else None


def stage_done(out: str | Path, stage: str) -> dict[str, Any] | None:
    """The stored result of a completed stage, or None."""
    path = Path(out) / stage / RESULT
    return json.loads(path.read_text()) if path.is_file() else None


def _jsonable(obj: Any) -> Any:
    """Tensors, numpy values, paths and dataclasses as plain JSON values (NaN → None)."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.detach().cpu().tolist())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return repr(obj)


def _write_json(path: Path, data: Mapping[str, Any]) -> Path:
    """Write JSON atomically (temp file + rename): a half-written result never looks complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_jsonable(data), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _device_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} thread{'s' if torch.get_num_threads() != 1 else ''})"


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
        self.timings: dict[str, float] = {}

    # ---- shared resources -------------------------------------------------------------------
    @property
    def data_module(self) -> Any:
        """The :class:`SpeechCommandsDataModule` (synthesizing the default data on first use)."""
        if self._dm is None:
            start = time.perf_counter()
            self._dm = make_data_module(self.cfg)
            self.timings["data"] = self.timings.get("data", 0.0) + time.perf_counter() - start
        return self._dm

    def loader(self, split: str) -> Any:
        """A train/val/test/real_test DataLoader (building the split, and timing it, on first use)."""
        dm = self.data_module
        start = time.perf_counter()
        result = getattr(dm, f"{split}_dataloader")()
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
                                    "real_test_root": str(dm.real_test_root) if dm.real_test_root else None}
            for key, subset in (("n_train", "training"), ("n_val", "validation"), ("n_test", "testing")):
                info[key] = len(dm.dataset(subset))
            if dm.real_test_root and include_real:
                info["n_real_test"] = len(dm.dataset("real_test"))
            self._data_info = info
        return self._data_info

    def space(self) -> Any:
        """A fresh search space of the configured preset and front end (strategies mutate theirs)."""
        coarse = {"coarse": True} if self.cfg.strategy == "proxyless" else {}  # whole-block LayerChoices
        return build_space(self.cfg.preset, frontend=self.cfg.frontend, **coarse)

    def latency_table(self) -> Any:
        """The latency look-up table: ``cfg.latency_lut``, else measured once into ``<out>/profile/``.

        Measured with single-thread CPU time per call (``clock='cpu'``), which background load on
        a shared machine does not inflate; ``nni-kws profile`` makes wall-clock tables for a device.
        """
        from .cost import LatencyTable

        if self._lut is None:
            path = Path(self.cfg.latency_lut) if self.cfg.latency_lut else self.out / "profile" / "latency.json"
            if path.is_file() or self.cfg.latency_lut:
                self._lut = LatencyTable.load(path)
            else:
                start = time.perf_counter()
                log.info("measuring a latency table of the %s space (%s front end)", self.cfg.preset, self.cfg.frontend)
                self._lut = LatencyTable.measure(self.space(), repeats=20, rounds=2, calibration=3, clock="cpu",
                                                 progress=False)
                self._lut.save(path)
                _write_json(path.parent / RESULT, {"entries": len(self._lut.entries), "clock": "cpu",
                                                   "seconds": time.perf_counter() - start})
        return self._lut

    def cost_model(self) -> Any:
        """A :class:`CostModel` of a fresh space with the run's latency table."""
        from .cost import CostModel

        return CostModel(self.space(), lut=self.latency_table(), fallback="macs")

    def costs(self, arch: Mapping[str, Any]) -> dict[str, float]:
        """Exact hardware costs of ``arch``, plus weights and peak activations in kB."""
        costs = {k: float(v) for k, v in self.cost_model().exact(dict(arch)).items() if v is not None}
        if "weight_bytes" in costs:
            costs["weight_kb"] = costs["weight_bytes"] / 1000
        if "peak_activation_bytes" in costs:
            costs["peak_activation_kb"] = costs["peak_activation_bytes"] / 1000
        return costs

    def evaluate(self, model: nn.Module, *, real: bool = True) -> dict[str, float | None]:
        """Accuracy on the (synthesized) test split and, when available, on the real test set."""
        model = model.to(_device())
        res: dict[str, float | None] = {"test_acc": accuracy(model, self.loader("test"))}
        res["real_test_acc"] = accuracy(model, self.loader("real_test")) if real and self.has_real_test else None
        return res

    # ---- bookkeeping -------------------------------------------------------------------------
    def prepare(self, stages: Sequence[str], *, resume: bool, overwrite: bool) -> None:
        """Check the run folder against ``stages``, wipe it with ``overwrite``, store the config."""
        done = [s for s in STAGES[:-1] if stage_done(self.out, s)]
        if overwrite:
            for stage in (*STAGES[:-1], "profile"):
                shutil.rmtree(self.out / stage, ignore_errors=True)
            for name in (CONFIG, "results.json", "report.md", "pareto.png"):
                (self.out / name).unlink(missing_ok=True)
        elif not resume:
            again = [s for s in stages if s in done]
            started = [s for s in stages if s != "report" and (self.out / s).is_dir() and s not in done]
            if again or started:
                which = ", ".join([f"{s} (complete)" for s in again] + [f"{s} (started)" for s in started])
                raise ValueError(f"{self.out} already holds stage {which}; pass --resume to continue, "
                                 "--overwrite to start over, or choose another --out")
        self.out.mkdir(parents=True, exist_ok=True)
        _write_json(self.out / CONFIG, self.cfg.to_json())

    def _stage(self, stage: str, body: Callable[[Path], dict[str, Any]], *, resume: bool) -> dict[str, Any]:
        """Run ``body(stage_dir)`` unless the stage is complete; store its result with its wall time."""
        done = stage_done(self.out, stage)
        if done is not None and resume:
            log.info("stage %s: already complete in %s, skipped", stage, self.out / stage)
            return done
        stage_dir = self.out / stage
        stage_dir.mkdir(parents=True, exist_ok=True)
        seed_everything(self.cfg.seed)
        log.info("stage %s: starting (outputs in %s)", stage, stage_dir)
        start = time.perf_counter()
        result = body(stage_dir)
        result["seconds"] = time.perf_counter() - start
        _write_json(stage_dir / RESULT, result)
        log.info("stage %s: done in %.1f s", stage, result["seconds"])
        return json.loads((stage_dir / RESULT).read_text())

    # ---- stages ------------------------------------------------------------------------------
    def search(self, *, resume: bool = False) -> dict[str, Any]:
        """Stage 1: one-shot hardware-aware search; writes ``search/arch.json`` and the inherited weights."""
        return self._stage("search", lambda d: self._search(d, resume), resume=resume)

    def penalties(self) -> list[Any]:
        """One :class:`ResourcePenalty` per budget that is set (weight λ, the configured form)."""
        from .search.penalty import ResourcePenalty

        return [ResourcePenalty(resource, target, self.cfg.lam, self.cfg.penalty_form)
                for resource, target in self.cfg.budgets().items()]

    def _search(self, stage_dir: Path, resume: bool) -> dict[str, Any]:
        from .search.mixed_ops import derive_model
        from .search.oneshot import run_search

        cfg, space = self.cfg, self.space()
        result = run_search(space, self.loader("train"), self.loader("val"), strategy=cfg.strategy,
                            epochs=cfg.search_epochs, penalties=self.penalties(), cost_model=self.cost_model(),
                            out_dir=stage_dir, seed=cfg.seed, resume=resume, progress=cfg.progress,
                            learning_rate=cfg.lr, arc_learning_rate=cfg.arc_lr)
        arch = validate_arch(self.space(), result.arch)
        costs = self.costs(arch)
        save_arch(arch, stage_dir / "arch.json", preset=cfg.preset, frontend=cfg.frontend, costs=costs)
        inherited = derive_model(self.space(), arch, result.supernet)
        torch.save(inherited.state_dict(), stage_dir / "init_weights.pt")
        acc = self.evaluate(inherited, real=False)
        return {"arch": arch, "costs": costs, "strategy": cfg.strategy, "penalties": [
            {"resource": r, "target": t, "weight": cfg.lam, "form": cfg.penalty_form} for r, t in cfg.budgets().items()],
            "probs": result.probs, "history": result.history, **acc, "data": self.data_info(include_real=False)}

    def train(self, arch: Mapping[str, Any] | None = None, *, resume: bool = False) -> dict[str, Any]:
        """Stage 2: train the frozen architecture (``arch``, else the searched one) and evaluate it."""
        if arch is None:
            searched = stage_done(self.out, "search")
            if searched is None:
                raise FileNotFoundError(f"no searched architecture in {self.out / 'search'}; run `nni-kws search` "
                                        "first or pass --arch FILE")
            arch = searched["arch"]
        arch = validate_arch(self.space(), arch)
        return self._stage("train", lambda d: self._train(d, arch, resume), resume=resume)

    def _initial_model(self, arch: dict[str, Any]) -> nn.Module:
        model = build_model_for(self.space(), arch)
        if self.cfg.init == "supernet":
            searched = stage_done(self.out, "search")
            weights = self.out / "search" / "init_weights.pt"
            if searched is None or not weights.is_file():
                raise FileNotFoundError(f"--init supernet needs a completed search in {self.out / 'search'}")
            if searched["arch"] != arch:
                raise ValueError("--init supernet needs the searched architecture; this --arch differs from "
                                 f"{self.out / 'search' / 'arch.json'}")
            model.load_state_dict(torch.load(weights, map_location="cpu"))
        elif self.cfg.init != "scratch":
            raise ValueError(f"--init must be 'scratch' or 'supernet', got {self.cfg.init!r}")
        return model

    def _train(self, stage_dir: Path, arch: dict[str, Any], resume: bool) -> dict[str, Any]:
        cfg = self.cfg
        save_arch(arch, stage_dir / "arch.json", preset=cfg.preset, frontend=cfg.frontend)
        model = self._initial_model(arch)
        weights = stage_dir / "model.pt"
        if resume and weights.is_file():  # trained, interrupted during evaluation
            model.load_state_dict(torch.load(weights, map_location="cpu"))
            metrics = json.loads((stage_dir / "train_metrics.json").read_text())
        else:
            metrics = fit(model, self.loader("train"), self.loader("val"), epochs=cfg.train_epochs,
                          out_dir=stage_dir, resume=resume, progress=cfg.progress, learning_rate=cfg.lr)
            torch.save(model.state_dict(), weights)
        costs = self.costs(arch)
        acc = self.evaluate(model)
        return {"arch": arch, "costs": costs, "init": cfg.init, "epochs": cfg.train_epochs,
                "val_acc": metrics.get("val_acc"), **acc, "data": self.data_info()}

    def trained_model(self) -> tuple[dict[str, Any], nn.Module]:
        """The architecture and float weights of the completed train stage."""
        trained = stage_done(self.out, "train")
        if trained is None:
            raise FileNotFoundError(f"no trained model in {self.out / 'train'}; run `nni-kws train` first")
        model = build_model_for(self.space(), trained["arch"])
        model.load_state_dict(torch.load(self.out / "train" / "model.pt", map_location="cpu"))
        return trained["arch"], model

    def quantize(self, *, resume: bool = False) -> dict[str, Any]:
        """Stage 3: quantization-aware fine-tuning with learned (or fixed) bit-widths, then evaluation."""
        return self._stage("quantize", lambda d: self._quantize(d, resume), resume=resume)

    def _quantize(self, stage_dir: Path, resume: bool) -> dict[str, Any]:
        """Fine-tune with quantizers (no mid-stage checkpoint: an interrupted quantization restarts)."""
        from .quant import quantize_model

        cfg = self.cfg
        arch, model = self.trained_model()
        trained = stage_done(self.out, "train") or {}
        known = {"val": trained.get("val_acc"), "test": trained.get("test_acc"), "real_test": trained.get("real_test_acc")}
        extra = {"real_test": self.loader("real_test")} if self.has_real_test else {}
        learned = cfg.quant_method == "trained"  # bit budgets only steer learned bit-widths; 0 switches one off
        budget = {k: v if learned and v else None for k, v in (("weight_budget_bits", cfg.weight_budget_bits),
                                                               ("act_budget_bits", cfg.act_budget_bits))}
        kwargs: dict[str, Any] = dict(method=cfg.quant_method, bits=cfg.bits, **budget, epochs=cfg.quant_epochs,
                                      out_dir=stage_dir,
                                      test_loader=self.loader("test"), extra_loaders=extra, progress=cfg.progress,
                                      float_accuracy={k: v for k, v in known.items() if v is not None})
        if "resume" in inspect.signature(quantize_model).parameters:
            kwargs["resume"] = resume
        qres = quantize_model(model.to(_device()), self.loader("train"), self.loader("val"), **kwargs)
        report = _jsonable(qres.report)
        after = {name: acc.get("after") for name, acc in report.get("accuracy", {}).items()}
        costs = dict(self.costs(arch))
        costs.update(_quant_costs(report, costs))
        return {"arch": arch, "method": cfg.quant_method, "costs": costs, "report": report,
                "onnx": str(qres.onnx_path) if qres.onnx_path else None, **_quant_bits(report),
                "val_acc": after.get("val"), "test_acc": after.get("test"), "real_test_acc": after.get("real_test")}

    def report(self) -> dict[str, Any]:
        """Stage 4: gather the stages into ``results.json``, ``report.md`` and ``pareto.png``."""
        from .report import write_report

        start = time.perf_counter()
        stages = {s: stage_done(self.out, s) for s in STAGES[:-1]}
        points = []
        for stage, kind, name in (("search", "searched", "searched (supernet weights)"),
                                  ("train", "retrained", "retrained (float)"),
                                  ("quantize", "quantized", "quantized")):
            res = stages[stage]
            if res:
                points.append({"name": name, "kind": kind, "costs": res.get("costs", {}),
                               "test_acc": res.get("test_acc"), "real_test_acc": res.get("real_test_acc"),
                               "val_acc": res.get("val_acc"), "bits_weight": res.get("bits_weight"),
                               "bits_act": res.get("bits_act")})
        timings = {s: res["seconds"] for s, res in stages.items() if res}
        arch = next((res["arch"] for res in (stages["train"], stages["search"]) if res), None)
        quant = stages["quantize"] or {}
        results = {
            "config": self.cfg.to_json(), "device": _device_name(), "arch": arch,
            "data": next((res["data"] for res in (stages["train"], stages["search"]) if res and res.get("data")), None)
            or self.data_info(),
            "search": stages["search"] and {k: v for k, v in stages["search"].items() if k not in ("history", "data")},
            "float": stages["train"] and {k: v for k, v in stages["train"].items() if k != "data"},
            "quant": quant and {**{k: v for k, v in quant.items() if k != "report"},
                                "layers": _quant_layers(quant.get("report", {}))},
            "points": points, "timings_s": timings,
            # parts of the stage times above (not added to the total): data loading/synthesis in this
            # process, measuring the latency table
            "timings_included_s": {"data_loading": self.timings.get("data"),
                                   "latency_profile": (stage_done(self.out, "profile") or {}).get("seconds")},
        }
        results["quant_report"] = quant.get("report")
        write_report(results, self.out)
        results["timings_s"]["report"] = time.perf_counter() - start
        results["timings_s"]["total"] = sum(v for v in results["timings_s"].values() if v)
        _write_json(self.out / "results.json", results)
        write_report(results, self.out)  # again, with the report's own time in the table
        return results


# ---- helpers tolerant of the quantizer's report format ------------------------------------------
def _first(report: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if report.get(key) is not None:
            return report[key]
    return None


def _quant_bits(report: Mapping[str, Any]) -> dict[str, Any]:
    """Average bits per weight / activation from the quantizer's report."""
    return {"bits_weight": _first(report, "avg_bits_per_weight", "avg_weight_bits"),
            "bits_act": _first(report, "avg_bits_per_activation", "avg_act_bits")}


def _quant_costs(report: Mapping[str, Any], float_costs: Mapping[str, float]) -> dict[str, float]:
    """Weight memory of the quantized model in kB (from the report, else from the average bits)."""
    kb = _first(report, "size_bytes", "weight_bytes")
    kb = float(kb) / 1000 if kb is not None else None
    bits = _quant_bits(report)["bits_weight"]
    if kb is None and bits is not None and "params" in float_costs:
        kb = float(float_costs["params"]) * float(bits) / 8000
    return {"weight_kb": float(kb)} if kb is not None else {}


def _quant_layers(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per-layer bits (``[{name, weight_bits, act_bits, ...}]``) from the quantizer's report."""
    layers = report.get("layers") if isinstance(report, Mapping) else None
    return list(layers) if isinstance(layers, list) else []


def build_model_for(space: Any, arch: Mapping[str, Any]) -> nn.Module:
    """The frozen plain-torch model of ``arch`` in ``space``, with fresh weights."""
    from .space import build_model

    return build_model(arch, space)


def check_inputs(cfg: PipelineConfig) -> None:
    """Fail early, before any folder is written, on missing data/real-test/LUT paths or bad options."""
    if cfg.data is not None and not Path(cfg.data).expanduser().is_dir():
        raise FileNotFoundError(f"data folder not found: {cfg.data} (expected a Speech Commands copy in the "
                                "official layout: <word>/*.wav, validation_list.txt, testing_list.txt)")
    if cfg.real_test not in (None, "", "auto") and not Path(cfg.real_test).expanduser().is_dir():
        raise FileNotFoundError(f"real test folder not found: {cfg.real_test}")
    if cfg.latency_lut and not Path(cfg.latency_lut).is_file():
        raise FileNotFoundError(f"latency table not found: {cfg.latency_lut}")
    if cfg.init not in ("scratch", "supernet"):
        raise ValueError(f"init must be 'scratch' or 'supernet', got {cfg.init!r}")
    for name in ("search_epochs", "train_epochs", "quant_epochs", "batch_size"):
        if int(getattr(cfg, name)) < 1:
            raise ValueError(f"{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")


def make_data_module(cfg: PipelineConfig) -> Any:
    """The data module of a run: ``cfg.data`` or the synthesized default dataset."""
    from .data.datamodule import SpeechCommandsDataModule

    if cfg.data is not None:
        root = Path(cfg.data).expanduser()
    else:
        from .data.synth import ensure_default_dataset

        root = ensure_default_dataset(progress=cfg.progress, **({"speakers": cfg.speakers} if cfg.speakers else {}))
    real = cfg.real_test
    if real == "auto":
        real_root = default_real_test_root()
        if real_root is None:
            log.warning("real Speech Commands test folder not found next to the repository; skipping real-test accuracy")
    elif real:
        real_root = Path(real).expanduser()
        if not real_root.is_dir():
            raise FileNotFoundError(f"real test folder not found: {real_root}")
    else:
        real_root = None
    return SpeechCommandsDataModule(root, batch_size=cfg.batch_size, num_workers=cfg.workers, seed=cfg.seed,
                                    max_per_class=cfg.max_per_class, real_test_root=real_root, cache=True)


def run_pipeline(cfg: PipelineConfig, stages: Iterable[str] = STAGES, *, resume: bool = False,
                 overwrite: bool = False, arch: Mapping[str, Any] | None = None,
                 data_module: Any = None) -> dict[str, Any]:
    """Run ``stages`` (in order) in ``cfg.out``; returns ``{stage: result}`` (the report's results.json dict).

    ``arch`` (a validated dict) makes the train stage use it instead of the searched architecture.
    """
    stages = [s for s in STAGES if s in set(stages)]
    check_inputs(cfg)
    pipe = Pipeline(cfg, data_module=data_module)
    pipe.prepare(stages, resume=resume, overwrite=overwrite)
    with _torch_threads(cfg.threads):
        return _run_stages(pipe, stages, resume, arch)


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` for the block (0: leave torch's default)."""
    old = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _run_stages(pipe: Pipeline, stages: Sequence[str], resume: bool, arch: Mapping[str, Any] | None) -> dict[str, Any]:
    cfg = pipe.cfg
    total = time.perf_counter()
    out: dict[str, Any] = {}
    for i, stage in enumerate(stages, 1):
        log.info("=== [%d/%d] %s (elapsed %.0f s) ===", i, len(stages), stage, time.perf_counter() - total)
        if stage == "search":
            out[stage] = pipe.search(resume=resume)
        elif stage == "train":
            out[stage] = pipe.train(arch, resume=resume)
        elif stage == "quantize":
            out[stage] = pipe.quantize(resume=resume)
        else:
            out[stage] = pipe.report()
    log.info("=== done in %.0f s: %s ===", time.perf_counter() - total, cfg.out)
    return out


@dataclass
class SweepPlan:
    """What a sweep varies: ``knob`` ('lam' or a budget option such as 'max_macs') over ``values``."""
    knob: str = "lam"
    values: Sequence[float] = (0.0, 0.3, 1.0, 3.0)
    frontends: Sequence[str] = ("raw",)
    quantize: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _point_dir(out: Path, frontend: str, knob: str, value: float) -> Path:
    return out / frontend / f"{knob}-{value:g}"


def run_sweep(cfg: PipelineConfig, plan: SweepPlan, *, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Search + retrain (+ quantize) for every front end × knob value; writes sweep.json/.md and pareto.png.

    Every point is an ordinary run folder ``<out>/<frontend>/<knob>-<value>/``, so an interrupted
    sweep resumes point by point and stage by stage. Data is loaded once and shared.
    """
    valid = {f.name for f in dataclasses.fields(PipelineConfig)}
    if plan.knob not in valid or (plan.knob != "lam" and plan.knob not in _BUDGETS):
        raise ValueError(f"a sweep varies 'lam' or one of {sorted(_BUDGETS)}, not {plan.knob!r}")
    check_inputs(cfg)
    if plan.knob == "lam" and not cfg.budgets():
        raise ValueError("a λ sweep needs a budget to weigh: give one of --max-macs, --max-params, --max-peak-kb, "
                         "--max-latency-ms (or sweep a budget with --budgets)")
    out = Path(cfg.out)
    if overwrite:
        for frontend in plan.frontends:
            shutil.rmtree(out / frontend, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / CONFIG, {**cfg.to_json(), "sweep": dataclasses.asdict(plan)})
    stages = ["search", "train"] + (["quantize"] if plan.quantize else [])
    jobs = [(fe, v) for fe in plan.frontends for v in plan.values]
    start = time.perf_counter()
    with _torch_threads(cfg.threads):
        points = _sweep_points(cfg, plan, jobs, out, stages, resume)
    return _finish_sweep(cfg, plan, points, out, start)


def _sweep_points(cfg: PipelineConfig, plan: "SweepPlan", jobs: list[tuple[str, float]], out: Path,
                  stages: list[str], resume: bool) -> list[dict[str, Any]]:
    """Run (or, resuming, read back) every point of a sweep; returns the points' records."""
    from tqdm.auto import tqdm

    dm = None
    points: list[dict[str, Any]] = []
    luts: dict[str, str] = {}
    for frontend, value in tqdm(jobs, desc="sweep", unit="point", disable=not cfg.progress):
        if frontend not in luts:  # one latency table per front end, so the points' latencies compare
            luts[frontend] = cfg.latency_lut or str(out / frontend / "profile" / "latency.json")
            if not Path(luts[frontend]).is_file():
                Pipeline(dataclasses.replace(cfg, out=str(out / frontend), frontend=frontend)).latency_table()
        sub = dataclasses.replace(cfg, out=str(_point_dir(out, frontend, plan.knob, value)), frontend=frontend,
                                  latency_lut=luts[frontend], **{plan.knob: value}, **plan.extra)
        pipe = Pipeline(sub, data_module=dm)
        if dm is None:
            dm = pipe.data_module
        point_done = all(stage_done(sub.out, s) for s in stages)
        if not (resume and point_done):
            pipe.prepare(stages, resume=resume, overwrite=False)
            pipe.search(resume=resume)
            pipe.train(resume=resume)
            if plan.quantize:
                pipe.quantize(resume=resume)
        searched, trained = stage_done(sub.out, "search"), stage_done(sub.out, "train")
        quant = stage_done(sub.out, "quantize") if plan.quantize else None
        points.append({"frontend": frontend, plan.knob: value, "label": f"{value:g}", "arch": trained["arch"],
                       "costs": trained["costs"], "val_acc": trained.get("val_acc"), "test_acc": trained.get("test_acc"),
                       "real_test_acc": trained.get("real_test_acc"), "searched_test_acc": searched.get("test_acc"),
                       "quant": quant and {k: quant.get(k) for k in ("test_acc", "real_test_acc", "bits_weight",
                                                                     "bits_act", "costs")},
                       "seconds": searched["seconds"] + trained["seconds"] + (quant or {}).get("seconds", 0.0),
                       "dir": sub.out})
    return points


def _finish_sweep(cfg: PipelineConfig, plan: "SweepPlan", points: list[dict[str, Any]], out: Path,
                  start: float) -> dict[str, Any]:
    """Mark each front end's Pareto points; write sweep.json, sweep.md and pareto.png."""
    from .report import pareto_front, write_sweep_report

    for frontend in plan.frontends:
        sub_idx = [i for i, p in enumerate(points) if p["frontend"] == frontend]
        for cost in ("macs", "params", "latency_ms"):
            front = {sub_idx[j] for j in pareto_front([points[i] for i in sub_idx], cost)}
            for i in sub_idx:
                points[i].setdefault("pareto", {})[cost] = i in front
    sweep = {"knob": plan.knob, "values": list(plan.values), "frontends": list(plan.frontends),
             "config": cfg.to_json(), "device": _device_name(), "points": points,
             "seconds": time.perf_counter() - start}
    _write_json(out / "sweep.json", sweep)
    write_sweep_report(sweep, out)
    return sweep
