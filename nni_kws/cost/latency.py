"""Latency look-up table: measure every unit configuration of a space on the target, predict by sums.

A table entry is one *unit* (front end, whole MBConv block with its BN/ReLU/shortcut add, or the
head), keyed by its geometry (see :class:`~nni_kws.cost.layers.Unit`), holding a statistic
(median by default) of repeated batch-1 timings. Timing whole blocks rather than single convs
keeps the per-op costs of BN/ReLU/add inside the entries. What the sum misses (the model's own
forward, cache effects between consecutive blocks) is one fixed per-model term, the median of
(measured − Σ entries) over a few random calibration archs, timed in the same interleaved passes
as the entries: ``latency = overhead_ms + Σ entries``. It may be negative: each unit timed alone pays its own
call overhead (a session run under onnxruntime), which a whole model pays once, so the sum can overshoot.
(A fitted slope as well was tried: with ~10 noisy calibration points it generalised worse.)

Backends: ``torch-cpu`` (eager, ``torch.inference_mode``, ``torch.set_num_threads(threads)``) and
``onnxruntime`` (each unit exported with ``torch.onnx.export``, CPU provider, ``threads`` intra-op
threads). In both, SincConv is baked into a plain conv first (its filters are constants at
inference). Timings of all configurations are interleaved over ``rounds`` passes, so a burst of
background load spreads over all entries instead of inflating one.
"""
from __future__ import annotations

import copy
import io
import json
import os
import platform
import statistics
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from nni_kws.space import KwsSpace, bake_sinc, random_arch
from nni_kws.space.spectrogram import exportable

from .layers import SpaceTable, Unit, space_table, unit_modules

__all__ = ["BACKENDS", "CLOCKS", "STATISTICS", "RUN_TABLE", "LatencyTable", "UnknownConfiguration", "make_runner",
           "time_runners",
           "measure_model", "device_info"]

BACKENDS = ("torch-cpu", "onnxruntime")
# 'wall': elapsed time (the real latency; wants a quiet machine). 'cpu': CPU time of the calling
# thread, which preemption by other processes does not inflate (for shared machines; with
# threads=1 both backends compute in the calling thread, so it equals wall time on a quiet one).
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.thread_time}
# 'min' is the classic estimator under additive noise (timeit); 'median' the default.
STATISTICS: dict[str, Callable[[list[float]], float]] = {"median": statistics.median, "min": min}
#: How ``nni-kws run`` measures its table when given none (:meth:`LatencyTable.measure` arguments):
#: quick, and robust to other processes on a shared machine (CPU clock). Its prediction accuracy
#: is measured by ``benchmarks/cost_model.py --run-table`` (``benchmarks/results/cost_model_run_table.json``).
RUN_TABLE: dict[str, Any] = {"repeats": 20, "rounds": 2, "calibration": 3, "clock": "cpu", "statistic": "min"}


class UnknownConfiguration(ValueError, KeyError):
    """A unit configuration the latency table does not hold (a ValueError: the CLI prints one line)."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


def device_info(backend: str, threads: int, clock: str = "wall", statistic: str = "median") -> dict[str, Any]:
    """What the timings are valid for: CPU model, library versions, thread count, clock."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "backend": backend,
            "threads": threads, "clock": clock, "statistic": statistic}
    if backend == "onnxruntime":
        import onnxruntime
        info["onnxruntime"] = onnxruntime.__version__
    return info


def make_runner(module: nn.Module, in_shape: Sequence[int], backend: str = "torch-cpu",
                threads: int = 1) -> Callable[[], Any]:
    """A no-argument callable running ``module`` (sinc baked, eval) on a batch-1 random input."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown latency backend {backend!r}; choose from {BACKENDS}")
    module = bake_sinc(copy.deepcopy(module)).eval()
    x = torch.randn(1, *in_shape)
    if backend == "torch-cpu":
        def run() -> Any:
            with torch.inference_mode():
                return module(x)
        return run
    import onnxruntime as ort

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # legacy exporter: no onnxscript; an MFCC front end's STFT goes in as a DFT convolution
        torch.onnx.export(exportable(module), (x,), buffer, input_names=["x"], dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    feed = {"x": x.numpy()}
    return lambda: session.run(None, feed)


def time_runners(runners: Mapping[str, Callable[[], Any]], repeats: int = 50, rounds: int = 3, threads: int = 1,
                 clock: str = "wall", statistic: str = "median", warmup: int = 2, progress: bool = False,
                 desc: str = "timing") -> dict[str, float]:
    """``{key: statistic of repeats timings in ms}``, interleaving the runners over ``rounds`` passes."""
    from tqdm.auto import tqdm

    if clock not in CLOCKS or statistic not in STATISTICS:
        raise ValueError(f"clock must be one of {sorted(CLOCKS)} and statistic one of {sorted(STATISTICS)}")
    now, per_round = CLOCKS[clock], max(1, -(-repeats // rounds))
    times: dict[str, list[float]] = {key: [] for key in runners}
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tqdm(total=len(runners) * rounds, desc=desc, unit="config", disable=not progress) as bar:
            for _ in range(rounds):
                for key, run in runners.items():
                    for _ in range(warmup):
                        run()
                    for _ in range(per_round):
                        start = now()
                        run()
                        times[key].append((now() - start) * 1e3)
                    bar.update()
    finally:
        torch.set_num_threads(old_threads)
    return {key: STATISTICS[statistic](ts) for key, ts in times.items()}


def measure_model(model: nn.Module, backend: str = "torch-cpu", repeats: int = 50, threads: int = 1,
                  clock: str = "wall", statistic: str = "median", input_samples: int = 16000) -> float:
    """Batch-1 latency in ms (``statistic`` over ``repeats``) of a whole frozen model on one clip."""
    run = make_runner(model, (1, input_samples), backend, threads)
    return time_runners({"model": run}, repeats, 1, threads, clock, statistic, warmup=5)["model"]


@dataclass
class LatencyTable:
    """Measured unit latencies (ms) of one space on one device, plus the per-model ``overhead_ms``."""
    backend: str
    entries: dict[str, float]
    overhead_ms: float = 0.0
    device: dict[str, Any] = field(default_factory=dict)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> geometry + macs
    meta: dict[str, Any] = field(default_factory=dict)  # repeats, rounds, calibration seeds
    source: str = "<memory>"

    @classmethod
    def measure(cls, space: KwsSpace, backend: str = "torch-cpu", repeats: int = 100, threads: int = 1,
                rounds: int = 5, calibration: int = 10, clock: str = "wall", statistic: str = "median",
                table: SpaceTable | None = None, progress: bool = True,
                extra: Mapping[str, Callable[[], Any]] | None = None) -> "LatencyTable":
        """Time every unit configuration of ``space`` and ``calibration`` whole random archs (seeds
        ``10**6 + i``, saved in ``meta``) in the same interleaved passes, so that entries and
        overhead see the same machine load. ``extra`` runners (e.g. a benchmark's test models) are
        timed in those passes too; their timings go to ``meta['extra_ms']`` and nowhere else."""
        table = table or space_table(space)
        units = dict((u.key, (u, m)) for u, m in unit_modules(space, table))
        seeds = [10**6 + i for i in range(calibration)]
        archs = [random_arch(space, seed) for seed in seeds]
        runners = {key: make_runner(m, u.layers[0].in_shape, backend, threads) for key, (u, m) in units.items()}
        models = {f"model:{s}": make_runner(space.freeze(a), (1, table.input_samples), backend, threads)
                  for s, a in zip(seeds, archs)}
        extra = {f"extra:{key}": run for key, run in (extra or {}).items()}
        times = time_runners({**runners, **models, **extra}, repeats, rounds, threads, clock, statistic,
                             progress=progress, desc=f"profile {backend}")
        lut = cls(backend, {key: times[key] for key in runners}, 0.0, device_info(backend, threads, clock, statistic),
                  {key: {"kind": u.kind, **dict(u.config), "macs": u.macs} for key, (u, _) in units.items()},
                  {"repeats": repeats, "rounds": rounds, "calibration_seeds": seeds})
        gaps = [times[key] - lut.predict(table.units(a)) for key, a in zip(models, archs)]
        lut.overhead_ms = statistics.median(gaps) if gaps else 0.0
        if extra:
            lut.meta["extra_ms"] = {key[len("extra:"):]: times[key] for key in extra}
        return lut

    def lookup(self, unit: Unit, fallback: str | None = None) -> float:
        """The entry of ``unit``; unknown → :class:`UnknownConfiguration`, or with ``fallback='macs'``
        a MAC-proportional estimate (median ms per MAC of the table) and a warning."""
        if unit.key in self.entries:
            return self.entries[unit.key]
        message = f"latency table {self.source} has no entry for layer {unit.name!r}: {unit.key}"
        if fallback != "macs":
            raise UnknownConfiguration(f"{message} (profile this space with `nni-kws profile`, or estimate missing "
                                       "entries from MACs: --fallback macs, in Python fallback='macs')")
        warnings.warn(f"{message}; using a MAC-proportional estimate", stacklevel=2)
        rates = [ms / c["macs"] for key, ms in self.entries.items() if (c := self.configs.get(key, {})).get("macs")]
        if not rates:
            raise UnknownConfiguration(f"{message} and the table has no MAC counts for a fallback")
        return unit.macs * statistics.median(rates)

    def predict(self, units: Iterable[Unit], fallback: str | None = None) -> float:
        """Predicted latency in ms: ``overhead_ms + Σ`` entries of the units."""
        return self.overhead_ms + sum(self.lookup(u, fallback) for u in units)

    def to_json(self) -> dict[str, Any]:
        return {"backend": self.backend, "device": self.device, "overhead_ms": self.overhead_ms, "meta": self.meta,
                "entries": {key: {"ms": ms, **self.configs.get(key, {})} for key, ms in self.entries.items()}}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"latency table not found: {path}") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not a latency table JSON ({err})") from None
        try:
            entries = {key: float(e["ms"]) for key, e in data["entries"].items()}
            configs = {key: {k: v for k, v in e.items() if k != "ms"} for key, e in data["entries"].items()}
            return cls(data["backend"], entries, float(data.get("overhead_ms", 0.0)), data.get("device", {}), configs,
                       data.get("meta", {}), str(path))
        except (KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"{path}: not a latency table JSON (missing {err})") from None
