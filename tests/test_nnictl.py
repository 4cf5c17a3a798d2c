"""``nnictl`` front door: real experiments on loopback with the tiny space and tiny data, the trial
entry's errors, and the hardware-aware tuner (registration and rejection)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
import yaml

from nni_kws.nnictl import launch

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
EXAMPLES = REPO / "examples" / "nnictl"
TINY_SPACE = REPO / "search_spaces" / "tiny.json"
ALL_TUNERS = os.environ.get("NNI_KWS_ALL_TUNERS") == "1"  # run every example config (≈ 30 s each)


@pytest.fixture
def nni_env(tmp_path: Path) -> dict[str, str]:
    """Environment isolating NNI: config dir, ``~/nni-experiments`` registry and logs under tmp; as
    a newcomer's shell, no ``$NNI_KWS_DATA`` (trials without ``--data`` synthesize into tmp HOME)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "NNI_CONFIG_DIR": str(tmp_path / "nni-config"),
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}
    env.pop("NNI_KWS_DATA", None)
    return env


def nnictl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return launch.nnictl(*args, env=env, cwd=REPO)


@pytest.fixture(scope="module")
def tiny_lut(tmp_path_factory) -> Path:
    """A quickly measured latency table of the 'tiny' space (so trials report ``latency_ms``)."""
    from nni_kws.cost import LatencyTable
    from nni_kws.space import build_space
    path = tmp_path_factory.mktemp("lut") / "tiny.json"
    LatencyTable.measure(build_space("tiny"), repeats=3, rounds=1, calibration=3, progress=False).save(path)
    return path


#: What the tiny runs add to an example's trial command when they give no --data: the default
#: synthesized set, but espeak-only with 3 speakers (seconds to make) and few clips per class.
DEFAULT_DATA_ARGS = "--synth today --speakers 3 --max-per-class 4"


def tiny_config(example: str, tmp_path: Path, data: Path | None, trials: int = 2, lut: Path | None = None,
                **extra: object) -> Path:
    """The example config ``example`` turned into a tiny run: 'tiny' space, 1 epoch, data ``data``
    (None: as the example ships, no --data, so the trials use the synthesized default set)."""
    extra.setdefault("trial_args", DEFAULT_DATA_ARGS if data is None else "")
    return launch.shrink_config(EXAMPLES / example, tmp_path / example, data, trials=trials, lut=lut,
                                workdir=tmp_path / "experiments", **extra)


def trials_of(experiment_id: str) -> list[str]:
    """Live processes started for ``experiment_id`` (NNI sets ``NNI_EXP_ID`` in each trial's
    environment), so other experiments on this machine (other test runs) do not count."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                environ = (proc / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            mine = f"NNI_EXP_ID={experiment_id}".encode() in environ
            if mine and any(e.startswith(b"NNI_TRIAL_JOB_ID=") for e in environ):
                found.append(proc.name)
    return found


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes (this user's) that contain ``text``."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and proc.name != str(os.getpid()):
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd:
                found.append(f"{proc.name}: {cmd[:160]}")
    return found


def run_experiment(config: Path, env: dict[str, str], trials: int) -> tuple[str, list[dict], list[dict]]:
    """``nnictl create`` on a free loopback port, wait for ``trials`` trials, ``nnictl stop``, check
    that nothing is left running; returns the status, the trial records and the metrics (REST API)."""
    with launch.running(config, env) as rest:
        status = rest.wait(timeout=150, trials=trials)
        trials_info, metrics = rest.trials(), rest.metrics()
    exp_id = rest.experiment_id
    deadline = time.monotonic() + 20  # killed processes take a moment to go, on a loaded machine
    while (processes_mentioning(exp_id) or trials_of(exp_id)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not processes_mentioning(exp_id), "nnictl stop left processes behind"
    assert not trials_of(exp_id), "trials left behind"
    return status, trials_info, metrics


def check_trials(trials: list[dict], metrics: list[dict], n: int, env: dict[str, str], count_accuracy: Callable,
                 latency: bool = False) -> None:
    """``n`` trials succeeded, each with one intermediate accuracy per epoch and a final accuracy + costs; the
    accuracy is what the trial's saved model scores on the validation clips of its data (recounted here)."""
    from nni_kws.data.datamodule import SpeechCommandsDataModule
    from nni_kws.space import load_trained_model

    ended = [t for t in trials if t["status"] not in ("WAITING", "RUNNING")]
    assert len(ended) >= n
    (data,) = synthesized_sets(env)  # the trials' default set (DEFAULT_DATA_ARGS)
    val = SpeechCommandsDataModule(data, max_per_class=4).dataset("validation")
    for t in ended:
        log = Path(t["logPath"], "trial.log")
        assert t["status"] == "SUCCEEDED", log.read_text()[-3000:] if log.exists() else t
        mine = [m for m in metrics if m["trialJobId"] == t["trialJobId"]]
        final = next(m["data"] for m in mine if m["type"] == "FINAL")
        assert set(final) == {"default", "params", "macs", "peak_act_kb"} | ({"latency_ms"} if latency else set())
        accuracy = count_accuracy(load_trained_model(t["logPath"]), val)
        assert final["default"] == pytest.approx(accuracy, abs=1e-6)
        assert [m["data"] for m in mine if m["type"] == "PERIODICAL"] == [pytest.approx(accuracy, abs=1e-6)]  # 1 epoch


def synthesized_sets(env: dict[str, str]) -> list[Path]:
    """Dataset folders (and leftover temporary ones) in the ``~/.cache/nni-kws`` of ``env``'s HOME."""
    return sorted(p for p in (Path(env["HOME"]) / ".cache" / "nni-kws").glob("*synth-*") if p.is_dir())


def check_costs(trials: list[dict], metrics: list[dict], preset: str = "tiny") -> None:
    """Each trial's reported ``params``/``macs``/``peak_act_kb`` are the cost model's values for the
    parameters NNI sent it (``peak_act_kb`` = peak activation bytes / 1000, budgets.py's kB).

    "Sent it" is the ``parameterId`` of the trial's metrics, not the trial record's
    ``hyperParameters``: NNI 3.0's local service (``V3asV1``, ``training_service/v3/compat.js``)
    hands queued parameters to whichever trial asks first, so with concurrent trials the record
    may name another trial's parameters."""
    from nni_kws.cost import CostModel
    from nni_kws.space import space_by_name
    model = CostModel(space_by_name(preset))
    sent = {str(h["parameter_id"]): h["parameters"] for h in (json.loads(t["hyperParameters"][0]) for t in trials)}
    finals = [m for m in metrics if m["type"] == "FINAL"]
    assert finals
    for m in finals:
        exact, final = model.exact(sent[str(m["parameterId"])]), m["data"]
        assert (final["params"], final["macs"]) == (exact["params"], exact["macs"])
        assert final["peak_act_kb"] == pytest.approx(exact["peak_activation_bytes"] / 1000, abs=1e-4)


def test_nnictl_create_tpe_two_tiny_trials(tiny_lut, tmp_path, nni_env, count_accuracy):
    """tpe.yml as shipped (no --data, no $NNI_KWS_DATA): two concurrent trials share one synthesized
    default dataset, train, and report accuracy and the cost model's costs of their parameters."""
    config = tiny_config("tpe.yml", tmp_path, None, lut=tiny_lut)
    assert "--data" not in yaml.safe_load(config.read_text())["trialCommand"]
    status, trials, metrics = run_experiment(config, nni_env, trials=2)
    assert status in ("DONE", "NO_MORE_TRIAL", "RUNNING"), status
    check_trials(trials, metrics, 2, nni_env, count_accuracy, latency=True)
    assert all(m["data"]["latency_ms"] > 0 for m in metrics if m["type"] == "FINAL")
    params = [json.loads(t["hyperParameters"][0])["parameters"] for t in trials]
    assert all(set(p) == set(json.loads(TINY_SPACE.read_text())) for p in params)
    check_costs(trials, metrics)
    sets = synthesized_sets(nni_env)
    assert len(sets) == 1 and not sets[0].name.startswith("."), sets  # made once, no half-written copy
    logs = [Path(t["logPath"], "trial.log").read_text() for t in trials]
    assert sum("synthesizing the default dataset" in log for log in logs) == 1
    assert sum("reusing the default dataset" in log for log in logs) == 1


def test_assessor_stopped_trials_are_not_failed(tmp_path, tiny_gsc, nni_env):
    """A trial the assessor stops is not FAILED in the REST API: NNI stops it with SIGINT and counts
    it stopped (not failed) only if the process dies of the signal. NNI 3.0's local training service
    then says USER_CANCELED, never EARLY_STOPPED (its own race, see ``NniRest.stopped_by_assessor``),
    so the assessor's decision is read from the manager's log."""
    assessor = {"className": "nni_assessors.StopAtStep", "codeDirectory": str(Path(__file__).parent),
                "classArgs": {"step": 1}}
    config = tiny_config("tpe.yml", tmp_path, tiny_gsc, trials=1, concurrency=1, epochs=100, assessor=assessor)
    with launch.running(config, nni_env) as rest:
        rest.wait(timeout=150, trials=1)
        trials, metrics, stopped = rest.trials(), rest.metrics(), rest.stopped_by_assessor()
    assert [t["status"] for t in trials] == ["USER_CANCELED"], trials
    assert stopped == {trials[0]["trialJobId"]}
    log = Path(trials[0]["logPath"], "trial.log").read_text()
    assert "NNI stopped it" in log and "Traceback" not in log and "KeyboardInterrupt" not in log
    assert 1 <= sum(m["type"] == "PERIODICAL" for m in metrics) < 100  # stopped early, not finished


@pytest.mark.skipif(not ALL_TUNERS, reason="set NNI_KWS_ALL_TUNERS=1 to run every example config (≈ 30 s each)")
@pytest.mark.parametrize("example", ["random.yml", "evolution.yml", "gridsearch.yml", "hyperband.yml"])
def test_nnictl_other_tuners(example, tmp_path, nni_env, count_accuracy):
    extra = {"tuner": {"name": "Hyperband", "classArgs": {"optimize_mode": "maximize", "R": 2, "eta": 2}}} \
        if example == "hyperband.yml" else {}
    config = tiny_config(example, tmp_path, None, **extra)  # as shipped: no --data
    status, trials, metrics = run_experiment(config, nni_env, trials=2)
    check_trials(trials, metrics, 2, nni_env, count_accuracy)
    check_costs(trials, metrics)


def test_hardware_aware_tuner_registers_with_nnictl(nni_env):
    reg = nnictl(nni_env, "algo", "register", "--meta", str(EXAMPLES / "meta.yml"))
    assert reg.returncode == 0 and "registered" in reg.stdout + reg.stderr, reg.stdout + reg.stderr
    assert (Path(nni_env["NNI_CONFIG_DIR"]) / "registered_algorithms.yml").is_file()
    shown = nnictl(nni_env, "algo", "show", "KwsHardwareAware")
    assert "nni_kws.tuner.HardwareAwareTuner" in shown.stdout
    assert "KwsHardwareAware" in nnictl(nni_env, "algo", "list").stdout


def _median_params_budget(preset: str = "tiny") -> float:
    from nni_kws.nnictl.costs import arch_costs
    from nni_kws.space import build_space, random_arch
    params = sorted(arch_costs(random_arch(build_space(preset), seed=s), preset)["params"] for s in range(16))
    return params[len(params) // 2]


@pytest.mark.parametrize("inner", ["TPE", "Random", "Evolution", "GridSearch"])
def test_hardware_aware_tuner_rejects_over_budget(inner):
    from nni_kws.nnictl.costs import arch_costs
    from nni_kws.tuner import HardwareAwareTuner
    budget = _median_params_budget()
    tuner_args = {"TPE": {"seed": 0}, "Random": {"seed": 0}, "Evolution": {"population_size": 4}}.get(inner)
    tuner = HardwareAwareTuner(tuner=inner, preset="tiny", budgets={"params": budget}, tuner_args=tuner_args)
    tuner.update_search_space(json.loads(TINY_SPACE.read_text()))
    for round_ in range(3):  # generate, report, generate again: the inner tuner keeps working
        ids = list(range(4 * round_, 4 * round_ + 4))
        samples = tuner.generate_multiple_parameters(ids)
        assert len(samples) == 4
        assert all(arch_costs(p, "tiny")["params"] <= budget for p in samples)
        for i, p in zip(ids, samples):
            tuner.receive_trial_result(i, p, {"default": 0.5, "params": 1})
            tuner.trial_end(i, True)
    if inner in ("TPE", "Random"):  # seeded; Evolution's own RNG is not, GridSearch may start cheap
        assert tuner.rejected > 0


def test_hardware_aware_tuner_peak_act_kb_is_bytes_over_1000():
    """The tuner's ``peak_act_kb`` budget is the trials' metric: peak activation bytes / 1000
    (budgets.py). Every 'tiny' arch peaks at the front end's output, 96,000 bytes: 96.0 kB, but
    93.75 KiB, so a budget of 95.9 must refuse them all and one of 96.0 admit them all."""
    import nni

    from nni_kws.cost import CostModel
    from nni_kws.space import build_space, random_arch
    from nni_kws.tuner import HardwareAwareTuner
    model = CostModel(build_space("tiny"))
    peak = {model.exact(random_arch(build_space("tiny"), seed=s))["peak_activation_bytes"] for s in range(16)}
    assert peak == {96000}
    space = json.loads(TINY_SPACE.read_text())
    admits = HardwareAwareTuner(tuner="Random", preset="tiny", budgets={"peak_act_kb": 96.0}, tuner_args={"seed": 0})
    admits.update_search_space(space)
    assert len(admits.generate_multiple_parameters(list(range(4)))) == 4 and admits.rejected == 0
    refuses = HardwareAwareTuner(tuner="Random", preset="tiny", budgets={"peak_act_kb": 95.9}, max_tries=5)
    refuses.update_search_space(space)
    with pytest.raises(nni.NoMoreTrialError):
        refuses.generate_parameters(0)


def test_hardware_aware_tuner_penalize_and_give_up():
    from nni_kws.tuner import HardwareAwareTuner
    seen = []
    tuner = HardwareAwareTuner(tuner="Random", preset="tiny", budgets={"params": 1e-3}, mode="penalize",
                               penalty_scale=2.0)
    tuner.update_search_space(json.loads(TINY_SPACE.read_text()))
    tuner.inner.receive_trial_result = lambda pid, params, value, **kw: seen.append(value)
    p = tuner.generate_parameters(0)          # penalize mode: everything runs
    tuner.receive_trial_result(0, p, {"default": 0.9})
    assert seen and seen[0] < 0.9 - 1.0       # overshoot is huge, reward strongly reduced

    import nni
    strict = HardwareAwareTuner(tuner="Random", preset="tiny", budgets={"params": 1e-3}, max_tries=5)
    strict.update_search_space(json.loads(TINY_SPACE.read_text()))
    with pytest.raises(nni.NoMoreTrialError):
        strict.generate_parameters(0)
    assert strict.generate_multiple_parameters([1, 2]) == []   # NNI then ends the experiment
    with pytest.raises(ValueError, match="advisor"):
        HardwareAwareTuner(tuner="Hyperband", preset="tiny")
    with pytest.raises(ValueError, match="unknown budget 'flops'"):
        HardwareAwareTuner(tuner="TPE", preset="tiny", budgets={"flops": 3})
    with pytest.raises(ValueError, match="latency_ms budget needs a latency table"):
        HardwareAwareTuner(tuner="TPE", preset="tiny", budgets={"latency_ms": 3})


def test_hardware_aware_tuner_prices_the_classifier_of_the_trials_classes(tmp_path):
    """A 5-class dataset (3 keywords): the tuner prices a 5-way classifier, 7 outputs fewer than Speech Commands'
    (weights and biases), and ``experiment check`` refuses a config whose tuner prices another class count."""
    from nni_kws.data.labels import MANIFEST
    from nni_kws.nnictl.commands import check_config
    from nni_kws.space import build_model, build_space, random_arch
    from nni_kws.tuner import HardwareAwareTuner

    arch = random_arch(build_space("tiny"), seed=0)
    in_features = build_model(arch, build_space("tiny")).classifier.in_features
    twelve, five = (HardwareAwareTuner(preset="tiny", num_classes=n).costs(arch)["params"] for n in (12, 5))
    assert twelve - five == 7 * (in_features + 1)
    data = tmp_path / "wake"
    data.mkdir()
    (data / MANIFEST).write_text(json.dumps({"keywords": ["marvin", "sheila", "lights on"]}))
    config = yaml.safe_load((EXAMPLES / "hardware_aware.yml").read_text())
    config.update(searchSpaceFile=str(REPO / "search_spaces" / "small.json"), trialCodeDirectory=str(REPO),
                  trialCommand=f"python -m nni_kws.trial --preset small --data {data}")
    path = tmp_path / "hw.yml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="the trials' --data .* has 5 classes; set classArgs.num_classes: 5"):
        check_config(path)
    config["tuner"]["classArgs"]["num_classes"] = 5
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="'KwsHardwareAware' is not registered"):  # the class count passes
        check_config(path)


@pytest.mark.skipif(not ALL_TUNERS, reason="set NNI_KWS_ALL_TUNERS=1 to run every example config (≈ 30 s each)")
def test_hardware_aware_tuner_in_a_real_experiment(tmp_path, nni_env, count_accuracy):
    """Registered tuner in a real experiment whose budget leaves half the space: every trial within budget."""
    nnictl(nni_env, "algo", "register", "--meta", str(EXAMPLES / "meta.yml"))
    budget = _median_params_budget()
    config = tiny_config("hardware_aware.yml", tmp_path, None, tuner={
        "name": "KwsHardwareAware",
        "classArgs": {"tuner": "TPE", "tuner_args": {"seed": 1}, "preset": "tiny", "budgets": {"params": budget}}})
    status, trials, metrics = run_experiment(config, nni_env, trials=2)
    check_trials(trials, metrics, 2, nni_env, count_accuracy)
    finals = [m["data"] for m in metrics if m["type"] == "FINAL"]
    assert finals and all(f["params"] <= budget for f in finals)


def test_bad_class_args_fail_the_experiment_with_a_clear_error(tmp_path, tiny_gsc, nni_env):
    nnictl(nni_env, "algo", "register", "--meta", str(EXAMPLES / "meta.yml"))
    config = tiny_config("hardware_aware.yml", tmp_path, tiny_gsc, tuner={
        "name": "KwsHardwareAware", "classArgs": {"preset": "tiny", "budgets": {"flops": 1}}})
    status, trials, _ = run_experiment(config, nni_env, trials=1)
    assert status == "ERROR" and not trials
    log = next((tmp_path / "experiments").glob("*/log/dispatcher.log")).read_text()
    assert "unknown budget 'flops'" in log


def test_trial_rejects_bad_parameters_naming_the_label(tiny_gsc, tmp_path):
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps({**_first(), "s0_i0_k": 4}))
    out = subprocess.run([sys.executable, "-m", "nni_kws.trial", "--preset", "tiny", "--data", str(tiny_gsc),
                          "--arch", str(arch)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "label 's0_i0_k' has value 4" in out.stderr, out.stderr
    from nni_kws.nnictl.train_trial import split_parameters
    with pytest.raises(ValueError, match="'s0_i0_k'"):
        split_parameters({**_first(), "s0_i0_k": 4}, "tiny")
    with pytest.raises(ValueError, match="unknown label 'lr'"):
        split_parameters({**_first(), "lr": 0.1}, "tiny")
    arch_, train, budget = split_parameters({**_first(), "learning_rate": "0.01", "batch_size": 32.0,
                                             "TRIAL_BUDGET": 3}, "tiny")  # numeric strings count; 32.0 is 32
    assert train == {"learning_rate": 0.01, "batch_size": 32} and budget == 3.0 and arch_ == _first()
    with pytest.raises(ValueError, match="'learning_rate' must be a finite number, got 'fast'"):
        split_parameters({**_first(), "learning_rate": "fast"}, "tiny")


def test_trial_without_parameters_fails_loudly(tmp_path):
    """Outside NNI and without --arch a trial trains nothing: exit code 2 and one error line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NNI_")}
    out = subprocess.run([sys.executable, "-m", "nni_kws.trial", "--preset", "tiny"], capture_output=True,
                         text=True, timeout=120, env={**env, "HOME": str(tmp_path)})
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "nni_kws.trial: error: invalid trial: no parameters: NNI sent none (is this run by nnictl?) "
        "and no --arch FILE was given"], out.stderr
    assert not (tmp_path / ".cache" / "nni-kws").exists()  # failed before touching any data


def test_trial_runs_with_the_threads_it_is_given(tiny_gsc, tmp_path):
    """--threads sets the trial's torch threads (two trials sharing two cores want one each); < 0 is refused."""
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(_first()))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("NNI_")}, "OMP_NUM_THREADS": "2"}
    common = [sys.executable, "-m", "nni_kws.trial", "--preset", "tiny", "--data", str(tiny_gsc), "--arch", str(arch),
              "--epochs", "1", "--max-per-class", "4"]
    for extra, threads in (([], 2), (["--threads", "1"], 1)):
        out = subprocess.run(common + extra, capture_output=True, text=True, timeout=300, env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        assert f"epochs=1 threads={threads} " in out.stderr
    out = subprocess.run(common + ["--threads", "-1"], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 2 and "--threads must be >= 0, got -1" in out.stderr


def test_trial_data_folder_or_shared_default_set(monkeypatch, tmp_path):
    """--data / $NNI_KWS_DATA must exist; without either, processes started together synthesize
    the default set once (the others wait on the lock and reuse it) and all get the same folder."""
    from nni_kws.nnictl.train_trial import resolve_data
    monkeypatch.delenv("NNI_KWS_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="not found: .*nope \\(--data\\)"):
        resolve_data(tmp_path / "nope")
    monkeypatch.setenv("NNI_KWS_DATA", str(tmp_path))
    assert resolve_data(None) == tmp_path.resolve()

    env = {**{k: v for k, v in os.environ.items() if k != "NNI_KWS_DATA"}, "HOME": str(tmp_path / "home")}
    code = ("import logging, sys; logging.basicConfig(level=logging.INFO); "
            "from nni_kws.nnictl.train_trial import resolve_data; print(resolve_data(None, synth='today', speakers=3))")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    roots = {out.strip() for out, _ in outs}
    assert len(roots) == 1 and (Path(roots.pop()) / "testing_list.txt").is_file()
    logs = [err for _, err in outs]
    assert sum("synthesizing the default dataset" in log for log in logs) == 1, logs
    assert sum("reusing the default dataset" in log for log in logs) == 2
    assert [p.name for p in (tmp_path / "home" / ".cache" / "nni-kws").iterdir() if not p.name.endswith(".lock")] \
        == [p.name for p in synthesized_sets(env)] and len(synthesized_sets(env)) == 1


def _first() -> dict:
    return {label: spec["_value"][0] for label, spec in json.loads(TINY_SPACE.read_text()).items()}


def test_assessor_benchmark_quick_mode(tmp_path, monkeypatch):
    """benchmarks/assessor.py replays NNI's Medianstop; a trial history below the finished ones'
    median is stopped at once from start_step on, never before."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NNI_KWS_DATA", raising=False)
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import assessor
    result = assessor.main(["--quick", "--out", str(tmp_path / "assessor.json")])
    assert len(result["learning_curves"]) == 3 and all(len(c) == 3 for c in result["learning_curves"])
    assert set(result["medianstop"]) == {"0", "1", "2", "3"} and "smallest_safe_start_step" in result["verdict"]
    good, bad = [0.5, 0.6, 0.7], [0.1, 0.1, 0.1]
    assert assessor.replay_medianstop([good, good, bad], start_step=2) == [None, None, 2]
    assert assessor.replay_medianstop([bad, good, good], start_step=2) == [None, None, None]  # no median yet
    sys.modules.pop("assessor", None)


def test_experiment_check_validates_configs(tmp_path, monkeypatch):
    from nni_kws.nnictl.commands import check_config
    monkeypatch.setenv("NNI_CONFIG_DIR", str(tmp_path / "nni-config"))
    for example in sorted(EXAMPLES.glob("*.yml")):
        if example.name == "hardware_aware.yml":  # nnictl would hang with an unregistered tuner
            with pytest.raises(ValueError, match="'KwsHardwareAware' is not registered.*nnictl algo register"):
                check_config(example)
        elif example.name != "meta.yml":
            assert check_config(example) == [], example  # no data warning
    config = yaml.safe_load((EXAMPLES / "hardware_aware.yml").read_text())
    bad = tmp_path / "bad.yml"
    for edit, message in [({"tuner": {**config["tuner"], "classArgs": {"budgets": {"flops": 1}}}}, "unknown budget"),
                          ({"tuner": {"name": "TPE", "classArgs": {"optimize_mode": "best"}}}, "TPE classArgs.*best"),
                          ({"trialCommand": "python -m nni_kws.trial --preset tiny"},
                           "label 's0_depth' is not in the 'tiny' space"),
                          ({"searchSpaceFile": "nope.json"}, "not found"),
                          ({"trialCommand": "python -m nni_kws.trial --data /nonexistent/gsc"},
                           "trialCommand --data /nonexistent/gsc not found"),
                          ({"trialCommand": "python -m nni_kws.trial --lut lut.json"},
                           "trialCommand --lut lut.json not found")]:
        bad.write_text(yaml.safe_dump({**config, "searchSpaceFile": str(REPO / "search_spaces" / "small.json"),
                                       **edit}))
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            check_config(bad)


def test_remote_and_kubernetes_configs_are_valid_nni_configs(tmp_path, monkeypatch):
    from nni.experiment.config import ExperimentConfig

    from nni_kws.nnictl.commands import check_config
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_ed25519").write_text("dummy")  # the remote config's key file must exist
    monkeypatch.setenv("HOME", str(tmp_path))
    for path, platform in [(REPO / "examples/remote/config.yml", "remote"),
                           (REPO / "examples/kubernetes/config.yml", "frameworkcontroller")]:
        assert all("--data" not in w for w in check_config(path))  # they name the data path explicitly
        config = ExperimentConfig.load(path).canonical_copy()
        assert config.training_service.platform == platform
        assert config.tuner.class_args["optimize_mode"] == "maximize"
