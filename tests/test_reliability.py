"""The reliability audit's defects (``docs/reliability.md``), each reproduced on the tiny dataset.

The severe cases run a real ``nni-kws run`` child process and act on it from outside: real signals
(``os.kill``), a real SIGKILL followed by ``--resume`` compared with an uninterrupted run (equal
``results.json`` apart from timings), and a second process on the same run folder.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from nni_kws.cli import main
from nni_kws.pipeline import PipelineConfig

REPO = Path(__file__).resolve().parents[1]
#: A child runs with this process's torch thread count (conftest: one): a run is reproducible bit for bit at a
#: given thread count, and the comparisons below finish in this process what a child began.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
       "OMP_NUM_THREADS": str(torch.get_num_threads())}
#: Keys whose values are wall times, or name the run folder: the only ones two equal runs may differ in.
NOT_COMPARED = {"seconds", "timings_s", "timings_included_s", "time_s", "out", "onnx", "latency_lut"}


@pytest.fixture(scope="module")
def lut(tmp_path_factory) -> Path:
    """One latency table for every run here (a measured one differs from run to run)."""
    from nni_kws.cost import LatencyTable
    from nni_kws.space import build_space

    path = tmp_path_factory.mktemp("lut") / "tiny.json"
    LatencyTable.measure(build_space("tiny"), repeats=3, rounds=1, calibration=3, progress=False).save(path)
    return path


@pytest.fixture(scope="module")
def args(tiny_gsc: Path, lut: Path) -> list[str]:
    """Several epochs per stage, so that a signal can land between two checkpoints of a stage."""
    return ["--data", str(tiny_gsc), "--no-real-test", "--preset", "tiny", "--frontend", "raw", "--batch-size", "16",
            "--search-epochs", "3", "--train-epochs", "3", "--quant-epochs", "2", "--no-progress", "--latency-lut",
            str(lut)]


@pytest.fixture(scope="module")
def reference(args: list[str], tmp_path_factory) -> Path:
    """An uninterrupted run (in this process)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main(["run", "--out", str(out), *args]) == 0
    return out


def _comparable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _comparable(v) for k, v in obj.items() if k not in NOT_COMPARED}
    if isinstance(obj, list):
        return [_comparable(v) for v in obj]
    return obj


def _results(out: Path) -> Any:
    return _comparable(json.loads((out / "results.json").read_text()))


def _assert_same_run(out: Path, reference: Path) -> None:
    """The same results.json and the same weights (the few test clips could hide a different training)."""
    assert _results(out) == _results(reference)
    for name in ("train/model.pt", "quantize/checkpoints/last.pt"):
        want, got = (torch.load(run / name, map_location="cpu", weights_only=False) for run in (reference, out))
        want, got = (state.get("model", state) for state in (want, got))
        assert want.keys() == got.keys(), name
        assert [k for k in want if not torch.equal(want[k], got[k])] == [], name


def _start(out: Path, args: list[str], *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nni_kws.cli", "run", "--out", str(out), *args, *extra],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    """Wait until ``path`` exists while ``proc`` still runs (an epoch checkpoint: mid-stage)."""
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the run ended before {path} appeared:\n{proc.communicate()[0][-2000:]}"
        assert time.monotonic() < end, f"{path} did not appear in {timeout} s"
        time.sleep(0.02)


def _checkpoint(out: Path, stage: str) -> Path:
    """A stage's per-epoch checkpoint; ``--frontend raw`` searches one supernet per front end, sinc's first."""
    if stage == "quantize":
        return out / stage / "checkpoints" / "last.pt"
    return out / stage / ("frontend-sinc" if stage == "search" else "") / "checkpoints" / "last.ckpt"


def _copy(run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(run, out)
    return out


# ---- severe: signals, SIGKILL + resume, two processes ------------------------------------------------------
@pytest.mark.parametrize("stage", ["search", "train", "quantize"])
def test_sigkill_mid_stage_then_resume_equals_an_uninterrupted_run(stage: str, args, reference, tmp_path) -> None:
    """Audit 1.1/1.2: a killed and resumed run gives the uninterrupted run's results.json, bit for bit."""
    out = tmp_path / "run"
    proc = _start(out, args)
    _wait_for(_checkpoint(out, stage), proc)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (out / stage / "result.json").exists()
    assert main(["run", "--out", str(out), "--resume"]) == 0
    _assert_same_run(out, reference)


@pytest.mark.parametrize("stage, signum", [("search", signal.SIGTERM), ("train", signal.SIGINT)])
def test_signal_mid_stage_stops_with_128_plus_signal_and_the_resume_command(stage: str, signum: int, args, reference,
                                                                            tmp_path) -> None:
    """Audit 1.6/1.7/1.9: SIGTERM exits 143 and Ctrl-C 130 (not 0 or 1), naming the resume command; the
    stage is not marked complete, and --resume then equals an uninterrupted run."""
    out = tmp_path / "run"
    proc = _start(out, args)
    _wait_for(_checkpoint(out, stage), proc)
    os.kill(proc.pid, signum)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + signum, output[-2000:]
    assert f"stopped by {signal.Signals(signum).name}" in output
    assert f"Continue with: nni-kws run --out {out} --resume" in output
    assert "Strategy failed" not in output and "fails to be executed" not in output
    assert not (out / stage / "result.json").exists()
    assert main(["run", "--out", str(out), "--resume"]) == 0
    _assert_same_run(out, reference)


def test_a_second_process_cannot_resume_or_overwrite_a_run_in_use(args, tmp_path, capsys) -> None:
    """Audit 3.2/3.3: while one process runs in a folder, --resume and --overwrite from another are refused."""
    out = tmp_path / "run"
    proc = _start(out, [*args, "--search-epochs", "500"])  # stays in the search until stopped
    try:
        _wait_for(_checkpoint(out, "search"), proc)
        for extra in (["--resume"], ["--overwrite", "--search-epochs", "1"]):
            assert main(["run", "--out", str(out), *args, *extra]) == 2
            assert f"in use by another nni-kws process (pid {proc.pid})" in capsys.readouterr().err
        assert _checkpoint(out, "search").is_file()  # not deleted by --overwrite
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    history = [json.loads(line) for line in (_checkpoint(out, "search").parents[1] / "history.jsonl").read_text()
               .splitlines()]
    assert [r["epoch"] for r in history] == list(range(len(history)))  # one writer
    assert main(["run", "--out", str(out), "--resume", "--search-epochs", "1"]) == 2  # lock free: options refused
    assert "was made with search-epochs=500, not 1" in capsys.readouterr().err


def test_skipping_completed_stages_does_not_change_later_ones(reference, tmp_path) -> None:
    """Audit 1.3/1.4: a stage re-run in a new process (the earlier ones skipped) gives the same numbers."""
    out = _copy(reference, tmp_path)
    shutil.rmtree(out / "train")
    shutil.rmtree(out / "quantize")
    assert main(["run", "--out", str(out), "--resume"]) == 0
    _assert_same_run(out, reference)


def test_changed_options_on_resume_are_refused_and_config_is_kept(reference, tmp_path, capsys) -> None:
    """Audit 4.3-4.7: a stage made or started with other options is never kept silently, and config.json
    is not rewritten with options that did not produce the stored stages."""
    out = _copy(reference, tmp_path)
    config = (out / "config.json").read_text()
    for extra, message in [(["--search-epochs", "6", "--max-macs", "4e5"], "search-epochs=3, not 6"),
                           (["--quant-method", "fixed", "--bits", "3"], "quant-method='trained', not 'fixed'"),
                           (["--max-macs", "4e5"], "budgets")]:
        assert main(["run", "--out", str(out), "--resume", *extra]) == 2
        assert message in capsys.readouterr().err
        assert (out / "config.json").read_text() == config
    arch = json.loads((out / "search" / "arch.json").read_text())["arch"]
    other = {**arch, "s0_i0_k": 5 if arch["s0_i0_k"] == 3 else 3}
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert main(["train", "--arch", str(tmp_path / "other.json"), "--out", str(out), "--resume"]) == 2
    assert "train was made with another architecture (s0_i0_k=" in capsys.readouterr().err
    (out / "train" / "result.json").unlink()  # an interrupted train stage (its last.ckpt is kept)
    for extra, message in [(["--train-epochs", "2"], "train-epochs=3, not 2"),
                           (["--train-epochs", "6"], "train-epochs=3, not 6")]:
        assert main(["run", "--out", str(out), "--resume", *extra]) == 2
        assert message in capsys.readouterr().err
    (out / "search" / "result.json").unlink()
    assert main(["run", "--out", str(out), "--resume", "--strategy", "gumbel"]) == 2
    assert f"strategy={PipelineConfig().strategy!r}, not 'gumbel'" in capsys.readouterr().err


def test_divergence_in_search_or_training_marks_nothing_complete(tiny_gsc, lut, reference, tmp_path, capsys) -> None:
    """Audit 6.13: a diverged search or training is an error, and its stage has no result.json."""
    common = ["--data", str(tiny_gsc), "--no-real-test", "--preset", "tiny", "--batch-size", "16", "--no-progress"]
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), *common, "--search-epochs", "2", "--latency-lut", str(lut),
                 "--lr", "100"]) == 2
    assert "search diverged" in capsys.readouterr().err
    assert not (out / "search" / "result.json").exists()
    arch = str(reference / "search" / "arch.json")
    assert main(["train", "--arch", arch, "--out", str(tmp_path / "t"), *common, "--train-epochs", "2",
                 "--lr", "100"]) == 2
    assert "training diverged" in capsys.readouterr().err
    assert not (tmp_path / "t" / "train" / "result.json").exists()
    # no checkpoint was kept, so the stage may start again with a sane learning rate
    assert main(["train", "--arch", arch, "--out", str(tmp_path / "t"), "--resume", "--lr", "0.05",
                 "--train-epochs", "1"]) == 0


def test_nan_weights_are_training_diverged() -> None:
    from nni_kws.training import TrainingDiverged, check_finite_weights

    model = torch.nn.Linear(2, 2)
    check_finite_weights(model, "training")
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(TrainingDiverged, match="weight is not finite"):
        check_finite_weights(model, "training")


# ---- state files ---------------------------------------------------------------------------------------------
def test_corrupt_state_files_are_named_with_the_way_out(reference, tmp_path, capsys) -> None:
    """Audit 2.1-2.6, 2.8-2.10: one line naming the broken file, no traceback."""
    def run(out: Path, *argv: str) -> str:
        assert main([*(argv or ("run", "--out", str(out), "--resume")), ]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        return err

    cases = []
    for i, (edit, name, words) in enumerate([
        (lambda o: (o / "config.json").write_text((o / "config.json").read_text()[:100]), "config.json", "corrupt"),
        (lambda o: (o / "config.json").write_text('{"search_epochs": "two"}'), "config.json", "search_epochs is 'two'"),
        (lambda o: (o / "config.json").write_text("[1, 2]"), "config.json", "a JSON list"),
        (lambda o: (o / "search" / "result.json").write_text('{"arch": {"s0'), "search/result.json", "corrupt"),
    ]):
        out = _copy(reference, tmp_path / str(i))
        edit(out)
        cases.append((run(out), out / name, words))
    out = _copy(reference, tmp_path / "empty")
    (out / "search" / "result.json").write_text("{}")
    cases.append((run(out, "train", "--out", str(out)), out / "search" / "result.json", 'no "arch"'))
    for i, damage in enumerate([lambda p: os.truncate(p, 1000),
                                lambda p: p.write_bytes(random.Random(0).randbytes(20000))]):
        out = _copy(reference, tmp_path / f"ckpt{i}")
        (out / "search" / "result.json").unlink()  # an unfinished search resumes from last.ckpt
        damage(_checkpoint(out, "search"))
        cases.append((run(out), _checkpoint(out, "search"), "epoch=N.ckpt"))
    for i, damage in enumerate([lambda p: os.truncate(p, 2000), lambda p: p.write_bytes(b""),
                                lambda p: torch.save({"stages.1.0.weight": torch.zeros(1)}, p)]):
        out = _copy(reference, tmp_path / f"model{i}")
        (out / "quantize" / "result.json").unlink()
        damage(out / "train" / "model.pt")
        cases.append((run(out), out / "train" / "model.pt", "delete"))
    for err, path, words in cases:
        assert f"{path}:" in err and words in err, err


class _MakesAFile:
    """A pickle that, when unpickled, creates ``flag``: what a planted or garbled checkpoint could do."""
    def __init__(self, flag: Path) -> None:
        self.flag = flag

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.flag,))


def test_a_checkpoint_that_is_not_a_torch_zip_is_refused_before_unpickling(tmp_path) -> None:
    """Lightning checkpoints are read with weights_only=False; a file that is not torch.save's zip
    never reaches the pickle reader, so it can neither run code nor allocate at random (a CI flake)."""
    import pickle

    from nni_kws.files import CorruptStateFile, check_checkpoint

    flag, ckpt = tmp_path / "flag", tmp_path / "last.ckpt"
    ckpt.write_bytes(pickle.dumps(_MakesAFile(flag)))
    with pytest.raises(CorruptStateFile, match="last.ckpt: corrupt .not a torch.save zip archive"):
        check_checkpoint(ckpt)
    assert not flag.exists()
    pickle.loads(ckpt.read_bytes())  # the same bytes do run code when unpickled
    assert flag.exists()


def test_state_files_are_written_atomically(tmp_path) -> None:
    from nni_kws.files import load_torch, save_torch
    from nni_kws.training import AtomicCheckpointIO

    save_torch({"w": torch.ones(2)}, tmp_path / "model.pt")
    AtomicCheckpointIO().save_checkpoint({"epoch": 0, "state_dict": {}}, tmp_path / "last.ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "model.pt"]  # no temporary left
    assert torch.equal(load_torch(tmp_path / "model.pt")["w"], torch.ones(2))


# ---- early checks ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("extra, message", [
    (["--preset", "bogus"], "unknown space preset 'bogus'"), (["--lambda", "nan"], "lambda must be finite"),
    (["--max-macs", "-5"], "budget 'macs' must be a positive finite number"),
    (["--max-latency-ms", "inf"], "budget 'latency_ms'"), (["--bits", "100"], "bits must be an int in 2..8"),
    (["--weight-budget-bits", "-1"], "weight-budget-bits must be in"), (["--lr", "nan"], "lr must be a positive"),
    (["--qparam-lr-scale", "0"], "qparam-lr-scale must be a positive finite number"),
    (["--threads", "-2"], "threads must be >= 0, got -2"),
    (["--max-per-class", "0"], "max-per-class must be at least 1"),
    (["--max-per-class", "-1"], "max-per-class must be at least 1, got -1"),
])
def test_invalid_options_are_refused_before_the_folder_is_written(extra, message, tiny_gsc, tmp_path, capsys) -> None:
    """Audit 4.8, 6.9, 6.10, 6.12: one line, and no run folder that would then pin the bad value."""
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "--data", str(tiny_gsc), "--preset", "tiny", "--no-progress", *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_output_folder_errors_are_one_line(tiny_gsc, tmp_path, capsys) -> None:
    """Audit 7.1/7.2: --out is a file, or below one."""
    (tmp_path / "afile").write_text("x")
    for out, reason in [(tmp_path / "afile", "File exists"), (tmp_path / "afile" / "sub", "Not a directory")]:
        assert main(["run", "--out", str(out), "--data", str(tiny_gsc), "--preset", "tiny", "--no-progress"]) == 2
        assert capsys.readouterr().err.strip() == f"nni-kws run: error: cannot write run folder {out}: {reason}"
    assert (tmp_path / "afile").read_text() == "x"


def test_float_for_an_int_choice_is_refused(tmp_path, capsys) -> None:
    """Audit 6.4: 3.0 for a choice among [3, 5] is one line naming the label, not a TypeError traceback."""
    from nni_kws.space import build_space, random_arch

    arch = {**random_arch(build_space("tiny"), seed=0), "s0_i0_k": 3.0}
    (tmp_path / "a.json").write_text(json.dumps(arch))
    assert main(["cost", str(tmp_path / "a.json"), "--preset", "tiny"]) == 2
    assert "label 's0_i0_k' has value 3.0" in capsys.readouterr().err


def test_bare_arch_of_a_raw_front_end_search_trains(reference, tiny_gsc, tmp_path) -> None:
    """Audit 6.1: a bare arch dict whose 'frontend' label is the searched front end retrains as is."""
    arch = json.loads((reference / "search" / "arch.json").read_text())["arch"]
    assert "frontend" in arch
    (tmp_path / "bare.json").write_text(json.dumps(arch))
    assert main(["train", "--arch", str(tmp_path / "bare.json"), "--out", str(tmp_path / "t"), "--data",
                 str(tiny_gsc), "--no-real-test", "--preset", "tiny", "--train-epochs", "1", "--no-progress"]) == 0


def test_cost_bits_ranges_and_layer_names(reference, tmp_path, capsys) -> None:
    """Audit 6.5/6.7: 0 or 33 bits, negative per-layer bits and unknown layer names are errors."""
    arch = str(reference / "search" / "arch.json")
    bits_file = tmp_path / "bits.json"
    for argv, message in [(["--bits", "0"], "--bits must be in 1..32"), (["--bits", "33"], "--bits must be in 1..32"),
                          (["--act-bits", "0"], "--act-bits must be in 1..32"),
                          (["--bits", str(bits_file)], "no layer 'nonexistent.layer'")]:
        bits_file.write_text('{"nonexistent.layer": 4}')
        assert main(["cost", arch, *argv]) == 2
        assert message in capsys.readouterr().err
    bits_file.write_text('{"stages.0.0.0.0": -3}')
    assert main(["cost", arch, "--bits", str(bits_file)]) == 2
    assert "has -3 bits" in capsys.readouterr().err
    assert main(["cost", arch, "--bits", "4"]) == 0


# ---- nnictl ---------------------------------------------------------------------------------------------------
def test_experiment_check_rejects_what_nnictl_cannot_run(tmp_path, capsys) -> None:
    """Audit 8.2/8.6/8.7: tuner or assessor typo, unknown key, unparsable trial arguments, broken YAML."""
    config = yaml.safe_load((REPO / "examples" / "nnictl" / "tpe.yml").read_text())
    config["searchSpaceFile"] = str(REPO / "search_spaces" / "small.json")
    cases = [({"tuner": {**config["tuner"], "name": "TPEE"}}, "tuner 'TPEE' is not registered"),
             ({"assessor": {"name": "MedianStopp"}}, "assessor 'MedianStopp' is not registered"),
             ({"trialComand": config["trialCommand"]}, "unknown top-level key 'trialComand' (did you mean"),
             ({"trialCommand": "python -m nni_kws.trial --preset small --epochs zero"},
              "argument --epochs: invalid int value: 'zero'")]
    path = tmp_path / "x.yml"
    for edit, message in cases:
        path.write_text(yaml.safe_dump({**config, **edit}))
        assert main(["experiment", "check", str(path)]) == 2
        assert message in capsys.readouterr().err
    path.write_text("foo: [\n")
    assert main(["experiment", "check", str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"nni-kws experiment: error: {path}: not valid YAML at line 2")
    path.write_text(yaml.safe_dump({**config, "assessor": {"name": "Medianstop"}}))
    assert main(["experiment", "check", str(path)]) == 0


def _trial(tiny_gsc: Path, tmp_path: Path, params: dict[str, Any], monkeypatch) -> int:
    from nni_kws.nnictl.trial import main as trial_main
    from nni_kws.space import build_space, random_arch

    monkeypatch.setenv("NNI_KWS_DATA", str(tiny_gsc))
    (tmp_path / "p.json").write_text(json.dumps({**random_arch(build_space("tiny"), seed=0), **params}))
    return trial_main(["--preset", "tiny", "--epochs", "1", "--batch-size", "16", "--arch", str(tmp_path / "p.json"),
                       "--out", str(tmp_path / "trial")])


def test_trial_parameters_are_checked(tiny_gsc, tmp_path, monkeypatch, capsys) -> None:
    """Audit 8.10: batch_size 2.7, TRIAL_BUDGET <= 0, label_smoothing outside [0, 1) are invalid trials."""
    for params, message in [({"batch_size": 2.7}, "'batch_size' must be a whole number"),
                            ({"TRIAL_BUDGET": -1}, "'TRIAL_BUDGET' must be > 0"),
                            ({"TRIAL_BUDGET": 0}, "'TRIAL_BUDGET' must be > 0"),
                            ({"label_smoothing": 5}, "'label_smoothing' must be in [0, 1)"),
                            ({"learning_rate": float("nan")}, "'learning_rate' must be a finite number")]:
        assert _trial(tiny_gsc, tmp_path, params, monkeypatch) == 2
        assert message in capsys.readouterr().err


def test_diverged_trial_fails_instead_of_reporting_chance(tiny_gsc, tmp_path, monkeypatch, capsys) -> None:
    """Audit 8.9: a trial whose loss explodes exits non-zero (NNI marks it FAILED), reporting nothing."""
    assert _trial(tiny_gsc, tmp_path, {"learning_rate": 1e4, "batch_size": 8.0}, monkeypatch) == 1
    assert "trial failed: training diverged" in capsys.readouterr().err
    assert not (tmp_path / "trial" / "arch.json").exists()  # written with the final result only
