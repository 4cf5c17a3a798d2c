"""Latency look-up table: measure every unit configuration of a space on the target, predict by sums.

A table entry is one *unit* (front end, whole MBConv block with its BN/ReLU/shortcut add, or the
head), keyed by its geometry (see :class:`~nni_kws.cost.layers.Unit`), holding the median of
repeated batch-1 timings. Timing whole blocks instead of single convs keeps the per-op overheads
of BN/ReLU/add inside the entries. What is left, the model's own forward overhead, is one fixed
term: the median of (measured whole model − sum of its entries) over a few calibration archs.

Backends: ``torch-cpu`` (eager, ``torch.inference_mode``, ``torch.set_num_threads(threads)``) and
``onnxruntime`` (each unit exported with ``torch.onnx.export``, CPU provider, ``threads`` intra-op
threads). In both, SincConv is baked into a plain conv first (its filters are constants at
inference).
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
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from nni_kws.space import KwsSpace, bake_sinc, random_arch

from .layers import SpaceTable, Unit, space_table, unit_modules

__all__ = ["BACKENDS", "LatencyTable", "UnknownConfiguration", "measure_model", "measure_module", "device_info"]

BACKENDS = ("torch-cpu", "onnxruntime")


class UnknownConfiguration(KeyError):
    """A unit configuration the latency table does not hold."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


def device_info(backend: str, threads: int) -> dict[str, Any]:
    """What the timings are valid for: CPU model, library versions, thread count."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "backend": backend, "threads": threads}
    if backend == "onnxruntime":
        import onnxruntime
        info["onnxruntime"] = onnxruntime.__version__
    return info


def _runner(module: nn.Module, x: torch.Tensor, backend: str, threads: int) -> Callable[[], Any]:
    module = bake_sinc(copy.deepcopy(module)).eval()
    if backend == "torch-cpu":
        torch.set_num_threads(threads)

        def run() -> Any:
            with torch.inference_mode():
                return module(x)
        return run
    if backend == "onnxruntime":
        import onnxruntime as ort

        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (x,), buffer, input_names=["x"], dynamo=False)  # no onnxscript needed
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
        feed = {"x": x.numpy()}
        return lambda: session.run(None, feed)
    raise ValueError(f"unknown latency backend {backend!r}; choose from {BACKENDS}")


def _median_ms(run: Callable[[], Any], repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def measure_module(module: nn.Module, in_shape: Sequence[int], backend: str = "torch-cpu", repeats: int = 50,
                   threads: int = 1, warmup: int = 5) -> float:
    """Median batch-1 latency in ms of ``module`` on a random input of shape ``(1, *in_shape)``."""
    old_threads = torch.get_num_threads()
    try:
        return _median_ms(_runner(module, torch.randn(1, *in_shape), backend, threads), repeats, warmup)
    finally:
        torch.set_num_threads(old_threads)


def measure_model(model: nn.Module, backend: str = "torch-cpu", repeats: int = 50, threads: int = 1,
                  warmup: int = 5, input_samples: int = 16000) -> float:
    """Median batch-1 latency in ms of a whole frozen model on one clip."""
    return measure_module(model, (1, input_samples), backend, repeats, threads, warmup)


@dataclass
class LatencyTable:
    """Measured unit latencies (ms) of one space on one device, plus the per-model overhead."""
    backend: str
    entries: dict[str, float]
    overhead_ms: float = 0.0
    device: dict[str, Any] = field(default_factory=dict)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> geometry + macs
    meta: dict[str, Any] = field(default_factory=dict)  # repeats, calibration archs, ...
    source: str = "<memory>"

    @classmethod
    def measure(cls, space: KwsSpace, backend: str = "torch-cpu", repeats: int = 50, threads: int = 1,
                rounds: int = 3, calibration: int = 5, table: SpaceTable | None = None,
                progress: bool = True) -> "LatencyTable":
        """Time every unit configuration of ``space`` (``repeats`` calls each, split over ``rounds``
        interleaved passes so that a burst of background load does not hit one entry only), then
        fit the overhead on ``calibration`` random archs (their seeds are saved in ``meta``)."""
        from tqdm.auto import tqdm

        if backend not in BACKENDS:
            raise ValueError(f"unknown latency backend {backend!r}; choose from {BACKENDS}")
        table = table or space_table(space)
        old_threads = torch.get_num_threads()
        try:
            units = list(unit_modules(space, table))
            runners = [(u, _runner(m, torch.randn(1, *u.layers[0].in_shape), backend, threads)) for u, m in units]
            times: dict[str, list[float]] = {u.key: [] for u, _ in units}
            per_round = max(1, repeats // rounds)
            with tqdm(total=len(runners) * rounds, desc=f"profile {backend}", unit="config",
                      disable=not progress) as bar:
                for _ in range(rounds):
                    for unit, run in runners:
                        times[unit.key].append(_median_ms(run, per_round, warmup=2))
                        bar.update()
            entries = {key: statistics.median(ts) for key, ts in times.items()}
            lut = cls(backend, entries, 0.0, device_info(backend, threads),
                      {u.key: {"kind": u.kind, **dict(u.config), "macs": u.macs} for u, _ in units},
                      {"repeats": repeats, "rounds": rounds})
            seeds = [10**6 + i for i in range(calibration)]
            gaps = []
            for seed in seeds:
                arch = random_arch(space, seed)
                measured = measure_model(space.freeze(arch), backend, repeats, threads, 5, table.input_samples)
                gaps.append(measured - lut.predict(table.units(arch)))
            lut.overhead_ms = statistics.median(gaps) if gaps else 0.0
            lut.meta["calibration_seeds"] = seeds
        finally:
            torch.set_num_threads(old_threads)
        return lut

    def lookup(self, unit: Unit, fallback: str | None = None) -> float:
        """The entry of ``unit``; unknown → :class:`UnknownConfiguration`, or with ``fallback='macs'``
        a MAC-proportional estimate (median ms per MAC of the table) and a warning."""
        if unit.key in self.entries:
            return self.entries[unit.key]
        message = f"latency table {self.source} has no entry for layer {unit.name!r}: {unit.key}"
        if fallback != "macs":
            raise UnknownConfiguration(f"{message} (re-run `nni-kws profile` for this space, or use fallback='macs')")
        warnings.warn(f"{message}; using a MAC-proportional estimate", stacklevel=2)
        rates = [ms / c["macs"] for key, ms in self.entries.items() if (c := self.configs.get(key, {})).get("macs")]
        if not rates:
            raise UnknownConfiguration(f"{message} and the table has no MAC counts for a fallback")
        return unit.macs * statistics.median(rates)

    def predict(self, units: Iterable[Unit], fallback: str | None = None) -> float:
        """Predicted latency in ms: fixed overhead + sum of the units' entries."""
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
