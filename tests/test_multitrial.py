"""Multi-trial NAS from Python: strategies, the budget filter, the trial evaluator (mocked NNI
runtime) and one real ``NasExperiment`` (Random, 2 tiny trials) watched through the web UI's REST
API; one-shot DARTS searches run as ``nnictl`` trials (``--mode darts``) with per-epoch metrics."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nni_kws.cost import CostModel
from nni_kws.data.datamodule import SpeechCommandsDataModule
from nni_kws.nnictl import launch
from nni_kws.nnictl.costs import arch_costs
from nni_kws.nnictl.rest import NniRest, free_port
from nni_kws.space import build_space, load_trained_model, random_arch, space_by_name

VENV_BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


def _median_params(preset: str = "tiny") -> float:
    params = sorted(arch_costs(random_arch(build_space(preset), seed=s), preset)["params"] for s in range(16))
    return params[len(params) // 2]


def test_strategies_maximize_and_filter_over_budget():
    from nni.nas.strategy import TPE
    from nni.nas.strategy.middleware import Chain, Filter

    from nni_kws.nnictl.experiment import STRATEGIES, make_strategy, model_filter
    for name in STRATEGIES:
        assert make_strategy(name, seed=0) is not None
    tpe = make_strategy("tpe", seed=0)
    assert isinstance(tpe, TPE) and tpe.tuner.optimize_mode.value == "maximize"
    chained = make_strategy("random", seed=0, budgets={"params": 1000}, preset="tiny")
    assert isinstance(chained, Chain) and isinstance(chained._middlewares[0], Filter)
    assert chained._middlewares[0].metric_for_invalid == 0.0
    with pytest.raises(ValueError, match="unknown strategy"):
        make_strategy("darts")

    budget = _median_params()
    keep = model_filter("tiny", {"params": budget})

    class Model:  # what Filter passes: an ExecutableModelSpace; only .sample is read
        def __init__(self, sample):
            self.sample = sample

    archs = [random_arch(build_space("tiny"), seed=s) for s in range(16)]
    assert [keep(Model(a)) for a in archs] == [arch_costs(a, "tiny")["params"] <= budget for a in archs]
    assert 0 < sum(keep(Model(a)) for a in archs) < len(archs)


def test_trials_size_the_classifier_to_the_datas_own_keywords(tiny_gsc, tmp_path):
    """A dataset synthesized for other keywords (its manifest names 3): an nnictl trial trains, and costs, a 5-way
    classifier (3 keywords, _silence_, _unknown_), not Speech Commands' 12."""
    import shutil

    from nni_kws.nnictl.train_trial import run_trial
    from nni_kws.space import load_trained_model

    data = tmp_path / "three"
    shutil.copytree(tiny_gsc, data)
    (data / "manifest.json").write_text(json.dumps({"keywords": ["yes", "no", "up"]}))
    arch = random_arch(build_space("tiny"), seed=2)
    result = run_trial(arch, data=data, preset="tiny", epochs=1, batch_size=16, out_dir=tmp_path / "trial",
                       report=False)
    assert json.loads((tmp_path / "trial" / "arch.json").read_text())["num_classes"] == 5
    trained = load_trained_model(tmp_path / "trial")  # its checkpoint fits that space
    assert trained.classifier.out_features == 5
    assert result["params"] == sum(p.numel() for p in trained.parameters())  # the costs it reports to NNI


def test_trial_evaluator_reports_accuracy_and_costs(tiny_gsc, count_accuracy):
    from nni.nas.space import SimplifiedModelSpace

    from nni_kws.nnictl.experiment import trial_evaluator
    space = build_space("tiny")
    evaluator = trial_evaluator(tiny_gsc, "tiny", epochs=1, batch_size=32)
    arch = random_arch(space, seed=3)
    model = SimplifiedModelSpace.from_model(space, evaluator).freeze(arch)
    trained = model.executable_model()            # trained in place by the trial
    with evaluator.mock_runtime(model):
        evaluator.evaluate(trained)
    # NAS keeps the 'default' of the reported dict: the validation accuracy of the trained network
    assert model.metrics.final == pytest.approx(
        count_accuracy(trained, SpeechCommandsDataModule(tiny_gsc).dataset("validation")))
    assert len(model.metrics.intermediates) == 1  # one epoch, one val_acc


def test_nas_experiment_random_two_trials_in_the_web_ui(tiny_gsc, tmp_path):
    """``nni-kws experiment run --keep-ui`` (NasExperiment, Random + budget Filter): the REST API of
    its web UI lists 2 succeeded trials with accuracy and costs; Ctrl-C stops it, leaving nothing running."""
    port, budget = free_port(), _median_params()
    env = {**os.environ, "HOME": str(tmp_path / "home"), "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    cmd = [str(VENV_BIN / "nni-kws"), "experiment", "run", "--data", str(tiny_gsc), "--preset", "tiny",
           "--strategy", "random", "--trials", "2", "--concurrency", "2", "--epochs", "1", "--seed", "0",
           "--budget", f"params={budget}", "--port", str(port), "--experiment-dir", str(tmp_path / "exp"),
           "--out", str(tmp_path / "out"), "--batch-size", "32", "--keep-ui"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    rest, trials, finals = NniRest(port), [], {}
    try:
        deadline = time.monotonic() + 150
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                trials, finals = rest.trials(), rest.final_results()
                if sum(t["status"] == "SUCCEEDED" for t in trials) >= 2 and (tmp_path / "out").is_dir():
                    break
            except OSError:
                pass  # manager starting
            time.sleep(1)
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the command stops the experiment (also on test failure)
        try:
            out, err = proc.communicate(timeout=60)
        finally:
            _kill_if_running(proc, str(tmp_path / "exp"))
    assert proc.returncode == 0, err[-3000:]
    assert sum(t["status"] == "SUCCEEDED" for t in trials) == 2, trials
    assert len(finals) == 2
    for final in finals.values():
        assert {"default", "params", "macs", "peak_act_kb"} <= set(final) and final["params"] <= budget
    top = json.loads(out[out.rindex("\n[\n") + 1:])  # NNI logs to stdout too; the JSON comes last
    assert top and all(t["params"] <= budget for t in top)
    # each top model's accuracy is the final result its trial reported to NNI
    assert {t["accuracy"] for t in top} <= {final["default"] for final in finals.values()}
    assert json.loads((tmp_path / "out" / "top_models.json").read_text())["top"] == top
    with pytest.raises(OSError):  # the manager is gone with the experiment
        rest.status()
    assert not _running(str(tmp_path / "exp")), "processes of the experiment still running"


def test_nas_experiment_stopped_by_sigterm_stops_its_manager(tiny_gsc, tmp_path):
    """SIGTERM (a scheduler, ``kill``) mid-experiment: exit 143 and the NNI manager is stopped with it, so the
    port is free again; a second experiment on a port in use, or under a budget no architecture meets, is
    refused in one line before NNI starts."""
    port = free_port()
    env = {**os.environ, "HOME": str(tmp_path / "home"), "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    cmd = [str(VENV_BIN / "nni-kws"), "experiment", "run", "--data", str(tiny_gsc), "--preset", "tiny",
           "--strategy", "random", "--trials", "4", "--epochs", "1", "--port", str(port),
           "--experiment-dir", str(tmp_path / "exp"), "--batch-size", "32"]
    log = tmp_path / "run.log"  # a file, not a pipe: the NNI manager it starts may hold a pipe open after it ends
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT, cwd=tmp_path)
    rest = NniRest(port)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                rest.status()
                break  # the manager runs
            except OSError:
                time.sleep(0.5)
        assert proc.poll() is None, log.read_text()[-3000:]
        from nni_kws.cli import main

        assert main(["experiment", "run", "--data", str(tiny_gsc), "--preset", "tiny", "--port", str(port)]) == 2
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=90)
    finally:
        _kill_if_running(proc, str(tmp_path / "exp"))
    out = log.read_text()
    assert proc.returncode == 143, out[-3000:]
    assert "the experiment was stopped" in out
    _wait_until_gone(str(tmp_path / "exp"))  # the manager exits once it has stopped the experiment
    assert not _running(str(tmp_path / "exp")), "processes of the experiment still running"
    with pytest.raises(OSError):
        rest.status()


def test_nas_experiment_refuses_an_infeasible_budget(tiny_gsc, capsys):
    from nni_kws.cli import main
    from nni_kws.cost import CostModel

    cheapest = CostModel(build_space("tiny")).cheapest("params")[1]
    assert main(["experiment", "run", "--data", str(tiny_gsc), "--preset", "tiny", "--strategy", "tpe",
                 "--budget", f"params={cheapest - 1:g}", "--port", str(free_port())]) == 2
    assert f"below the cheapest architecture of the 'tiny' space: {cheapest:,.6g}" in capsys.readouterr().err


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def test_darts_searches_as_trials_report_every_search_epoch(tmp_path, count_accuracy):
    """``examples/nnictl/darts.yml`` on the tiny space: TPE tunes λ and the MAC target of 2-epoch
    DARTS searches; the UI gets one intermediate result per search epoch (sent live, while NNI's
    one-shot engine has the trial channel mocked) and the retrained accuracy with costs. As shipped,
    no --data and no $NNI_KWS_DATA: the trials share one synthesized default set (3 speakers here)."""
    env = {**os.environ, "HOME": str(tmp_path / "home"), "NNI_CONFIG_DIR": str(tmp_path / "nni-config"),
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("NNI_KWS_DATA", None)
    config = launch.shrink_config(REPO / "examples/nnictl/darts.yml", tmp_path / "darts.yml", None,
                                  workdir=tmp_path / "exp",
                                  trial_args="--search-epochs 2 --batch-size 32 --synth today --speakers 3 "
                                             "--max-per-class 4")
    with launch.running(config, env) as rest:
        rest.wait(timeout=180, trials=2)
        trials, metrics = rest.trials(), rest.metrics()
    assert [t["status"] for t in trials] == ["SUCCEEDED"] * 2
    (data,) = [p for p in (tmp_path / "home" / ".cache" / "nni-kws").glob("synth-*") if p.is_dir()]  # the trials' set
    val = SpeechCommandsDataModule(data, max_per_class=4).dataset("validation")
    for t in trials:
        mine = [m for m in metrics if m["trialJobId"] == t["trialJobId"]]
        epochs = [m["data"] for m in mine if m["type"] == "PERIODICAL"]
        assert len(epochs) == 2
        assert all({"default", "arch_loss", "expected_macs", "argmax_macs"} <= set(e) for e in epochs)
        final = next(m["data"] for m in mine if m["type"] == "FINAL")
        # the retrained model's accuracy on the validation clips, recounted; its MACs, counted by the cost model
        retrained = Path(t["logPath"]) / "retrain"
        assert final["default"] == pytest.approx(count_accuracy(load_trained_model(retrained), val), abs=1e-6)
        arch = json.loads((retrained / "arch.json").read_text())["arch"]
        assert final["macs"] == CostModel(space_by_name("tiny")).exact(arch)["macs"]
        assert json.loads(t["hyperParameters"][0])["parameters"].keys() == {"lambda", "target"}
    _wait_until_gone(str(tmp_path / "exp"))
    assert not _running(str(tmp_path / "exp")) and not _running("nni_kws.trial --mode darts --preset tiny")


def test_darts_parameters_are_checked():
    from nni_kws.nnictl.darts_trial import epoch_metrics, split_darts_parameters
    assert split_darts_parameters({"lambda": "0.5", "target": 3e6, "TRIAL_BUDGET": 2}) == {"lambda": 0.5, "target": 3e6}
    with pytest.raises(ValueError, match="unknown label 's0_i0_k'"):
        split_darts_parameters({"s0_i0_k": 3})
    record = {"metrics": {"arch_loss": 2.0, "penalty/hinge/macs": 0.1}, "expected": {"macs": 5.0}, "exact": {"macs": 4}}
    assert epoch_metrics(record) == {"default": 2.0, "arch_loss": 2.0, "penalty_hinge_macs": 0.1,
                                     "expected_macs": 5.0, "argmax_macs": 4.0}


def test_darts_trial_outside_nni_reads_its_parameters_from_the_arch_file(tiny_gsc, tmp_path):
    """``--mode darts --arch FILE`` searches with the file's parameters (they were ignored: no target, no budget)."""
    from nni_kws.cost import CostModel
    from nni_kws.nnictl.trial import main as trial_main

    params = tmp_path / "params.json"
    args = ["--mode", "darts", "--preset", "tiny", "--data", str(tiny_gsc), "--search-epochs", "1", "--epochs", "1",
            "--batch-size", "16", "--arch", str(params)]
    params.write_text(json.dumps({"lambda": 0.5}))
    assert trial_main(args) == 2  # no target anywhere
    target = 1.2 * CostModel(build_space("tiny")).cheapest("macs")[1]
    params.write_text(json.dumps({"lambda": 0.5, "target": target}))
    assert trial_main(args) == 0


def _running(text: str) -> list[Path]:
    """Live processes whose command line contains ``text``."""
    return [p for p in Path("/proc").glob("[0-9]*/cmdline") if text.encode() in _read(p)]


def _wait_until_gone(text: str, seconds: float = 20) -> None:
    """Wait (at most ``seconds``) until no live process mentions ``text``; stopped processes take a moment."""
    deadline = time.monotonic() + seconds
    while _running(text) and time.monotonic() < deadline:
        time.sleep(0.5)


def _kill_if_running(proc: subprocess.Popen, text: str) -> None:
    """After a failed test: kill ``proc`` if it still runs, and the orphaned processes (its NNI manager) that
    mention ``text``."""
    if proc.poll() is None:
        proc.kill()
        for cmdline in _running(text):
            os.kill(int(cmdline.parent.name), signal.SIGTERM)
