"""The espeak-ng synthesized dataset: layout, format, splits, reproducibility, caching, CLI."""
from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from nni_kws.data import synth
from nni_kws.data.labels import BACKGROUND_NOISE_DIR
from nni_kws.data.synth import dataset_fingerprint, default_dataset_dir, ensure_default_dataset, synthesize_dataset

SMALL = dict(speakers=6, seed=0, words=("yes", "no", "up", "bed"), noise_seconds=2, progress=False)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize_dataset(tmp_path_factory.mktemp("synth") / "ds", **SMALL)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _lists(root: Path) -> dict[str, set[str]]:
    return {name: set((root / f"{name}_list.txt").read_text().split()) for name in ("validation", "testing")}


def test_layout_and_format(small: Path):
    for word in SMALL["words"]:
        wavs = sorted((small / word).iterdir())
        assert len(wavs) == 6
        for wav in wavs:
            assert re.fullmatch(r"[0-9a-f]{8}_nohash_0\.wav", wav.name)
            info = sf.info(str(wav))
            assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, 16000, "PCM_16")
            x, _ = sf.read(str(wav))
            assert 0.2 < np.abs(x).max() < 0.96  # normalized peak, never clipped, never silent
    noises = sorted((small / BACKGROUND_NOISE_DIR).glob("*.wav"))
    assert [p.stem for p in noises] == ["brown_noise", "hum", "pink_noise", "white_noise"]
    assert all(sf.info(str(p)).samplerate == 16000 and sf.info(str(p)).frames == 32000 for p in noises)
    manifest = json.loads((small / "manifest.json").read_text())
    assert manifest["counts"]["clips"] == 24 and manifest["params"]["speakers"] == 6
    assert manifest["fingerprint"] == dataset_fingerprint(small)
    assert manifest["espeak_version"]
    assert not list(small.parent.glob(".*tmp*"))  # the temporary folder was renamed away


def test_speaker_disjoint_splits(small: Path):
    lists = _lists(small)
    assert not lists["validation"] & lists["testing"]
    all_files = {p.relative_to(small).as_posix() for w in SMALL["words"] for p in (small / w).iterdir()}
    assert lists["validation"] | lists["testing"] <= all_files
    split = {rel: "validation" if rel in lists["validation"] else "testing" if rel in lists["testing"] else "training"
             for rel in all_files}
    speakers: dict[str, set[str]] = {}
    for rel, where in split.items():
        speakers.setdefault(Path(rel).name.split("_nohash_")[0], set()).add(where)
    assert len(speakers) == 6 and all(len(s) == 1 for s in speakers.values())  # a speaker is in one split only
    assert sorted(next(iter(s)) for s in speakers.values()).count("training") == 4  # 6 speakers: 4 / 1 / 1


def test_reproducible_bytes(small: Path, tmp_path: Path):
    again = synthesize_dataset(tmp_path / "again", **SMALL)
    assert _files(again) == _files(small)  # same seed: every byte, manifest included
    other = synthesize_dataset(tmp_path / "other", **{**SMALL, "seed": 1})
    assert _files(other)["manifest.json"] != _files(small)["manifest.json"]
    yes_small = sorted(_files(small)[k] for k in _files(small) if k.startswith("yes/"))
    yes_other = sorted(_files(other)[k] for k in _files(other) if k.startswith("yes/"))
    assert not set(yes_small) & set(yes_other)


def test_cache_hit_and_mismatch(small: Path, tmp_path: Path):
    stamp = {p: p.stat().st_mtime_ns for p in small.rglob("*")}
    t0 = time.perf_counter()
    assert synthesize_dataset(small, **SMALL) == small
    assert time.perf_counter() - t0 < 1.0
    assert {p: p.stat().st_mtime_ns for p in small.rglob("*")} == stamp  # nothing rewritten
    with pytest.raises(ValueError, match="other parameters: speakers=6"):
        synthesize_dataset(small, **{**SMALL, "speakers": 7})
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty"):
        synthesize_dataset(tmp_path / "mine", **SMALL)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_interrupted_run_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    real = synth.make_clip
    monkeypatch.setattr(synth, "make_clip", failing)
    with pytest.raises(KeyboardInterrupt):
        synthesize_dataset(tmp_path / "ds", **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_default_dir_and_ensure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("NNI_KWS_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    a, b = default_dataset_dir(speakers=5), default_dataset_dir(speakers=6)
    assert a != b and a.parent == tmp_path / "home" / ".cache" / "nni-kws" and a.name.startswith("synth-")
    assert default_dataset_dir(speakers=5) == a
    monkeypatch.setenv("NNI_KWS_DATA", str(tmp_path / "data"))
    root = ensure_default_dataset(**SMALL)
    assert root == tmp_path / "data" and (root / "manifest.json").is_file()
    assert ensure_default_dataset(**SMALL) == root
    assert ensure_default_dataset(**{**SMALL, "speakers": 9}) == root  # the user's folder is used as it is


def test_cli_synth_and_check(tmp_path: Path, capsys: pytest.CaptureFixture):
    from nni_kws.cli import main

    out = tmp_path / "cli"
    assert main(["data", "synth", "--out", str(out), "--speakers", "3", "--words", "yes,no",
                 "--noise-seconds", "1", "--seed", "2", "-q"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["path"] == str(out) and report["built"] and report["counts"]["clips"] == 6
    assert main(["data", "check", str(out), "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"]
    (out / "no" / sorted(p.name for p in (out / "no").iterdir())[0]).write_bytes(b"RIFF broken")
    assert main(["data", "check", str(out), "-q"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["ok"] and any("fingerprint" in p for p in report["problems"])
    assert main(["data", "synth", "--out", str(out), "--speakers", "4", "--words", "yes,no", "-q"]) == 2
    assert "other parameters" in capsys.readouterr().err


# --- the data engine: flite, custom keywords, recorded noise, speaker variety -----------------------------

ENGINE = dict(speakers=3, seed=0, keywords="yes,lights on", words="yes,lights on,bed", noise_seconds=1,
              speed=(0.9, 1.1), room=1.0, channel=1.0, progress=False)


def test_engine_dataset_custom_keywords_and_reproducible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from nni_kws.data import SpeechCommands
    from nni_kws.data.flite import flite_voices

    noise = tmp_path / "my_noise"
    noise.mkdir()
    sf.write(noise / "fan.wav", np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32), 16000)
    flite = 4 if flite_voices() else 0
    params = dict(ENGINE, flite_speakers=flite, recorded_noise=str(noise))
    root = synthesize_dataset(tmp_path / "ds", **params)
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["keywords"] == ["yes", "lights on"] and (root / "lights on").is_dir()
    assert manifest["counts"]["speakers_by_engine"] == {"espeak": 3, "flite": flite}
    assert manifest["counts"]["clips"] == 3 * (3 + flite)
    assert (root / BACKGROUND_NOISE_DIR / "recorded_fan.wav").read_bytes() == (noise / "fan.wav").read_bytes()
    ds = SpeechCommands(root, "training")
    assert ds.classes == ("yes", "lights on", "_silence_", "_unknown_") and ds.num_classes == 4
    assert {ds.classes[y] for y in ds.labels} == set(ds.classes)
    again = synthesize_dataset(tmp_path / "again", **params)
    assert _files(again) == _files(root)  # all engine parts on: still the same bytes
    plain = synthesize_dataset(tmp_path / "plain", **dict(ENGINE, room=0.0, channel=0.0, speed=None))
    assert _files(plain)["yes/" + sorted(p.name for p in (plain / "yes").iterdir())[0]] != \
        _files(root)["yes/" + sorted(p.name for p in (root / "yes").iterdir())[0]]  # the effects change clips


def test_flite_absent_means_espeak_only_with_one_notice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture):
    monkeypatch.setattr(synth, "flite_voices", lambda: ())
    synth._notice.cache_clear()
    with caplog.at_level("WARNING", logger="nni_kws.data.synth"):
        a = synth._params(speakers=2, flite_speakers=5)
        synth._params(speakers=2, flite_speakers=5)
    assert a["flite_speakers"] == 0 and a["flite_voices"] == []
    notices = [r.getMessage() for r in caplog.records if "flite" in r.getMessage()]
    assert len(notices) == 1 and "espeak-ng only" in notices[0]
    synth._notice.cache_clear()


def test_flite_is_deterministic_and_matches_the_program():
    import shutil
    import subprocess

    from nni_kws.data.flite import Flite, flite_voices

    if "slt" not in flite_voices() or not shutil.which("flite"):
        pytest.skip("flite not installed")
    engine = Flite.get()
    x, rate = engine.synth("stop", "slt", stretch=1.1, f0=150, f0_std=20)
    engine.synth("go", "awb")
    assert rate == 16000 and np.array_equal(engine.synth("stop", "slt", stretch=1.1, f0=150, f0_std=20)[0], x)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["flite", "-voice", "slt", "-t", "stop", "-o", f"{tmp}/a.wav", "--setf", "duration_stretch=1.1",
                        "--setf", "int_f0_target_mean=150", "--setf", "int_f0_target_stddev=20"], check=True)
        assert np.array_equal(sf.read(f"{tmp}/a.wav", dtype="int16")[0], x)


def test_flite_speaks_the_same_whatever_this_process_does_with_rand():
    """Clustergen voices draw excitation from libc ``rand()``: another thread calling it once changed a
    "lights on" clip of a reproducibility test under load. Spoken in a child process, it cannot."""
    import ctypes
    import threading

    from nni_kws.data.flite import flite_speak_all, flite_voices

    if "slt" not in flite_voices():
        pytest.skip("flite not installed")
    plan = [dict(text=w, voice="slt", stretch=1.0, f0=150, f0_std=20) for w in ("lights on", "stop", "lights on")]
    quiet = [x.tobytes() for x, _ in flite_speak_all(plan)]
    stop, libc = threading.Event(), ctypes.CDLL(None)

    def spin() -> None:
        while not stop.is_set():
            libc.rand()

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        busy = [x.tobytes() for x, _ in flite_speak_all(plan)]
    finally:
        stop.set()
        spinner.join()
    assert busy == quiet and quiet[0] == quiet[2]


def test_full_preset_has_over_1000_distinct_voices():
    from nni_kws.data.espeak import espeak_data_path, espeak_voice_lists
    from nni_kws.data.speakers import espeak_speakers, flite_speakers, voice_config

    full = synth.PRESETS["full"]
    voices, variants = espeak_voice_lists(espeak_data_path())
    espeak = espeak_speakers(full["speakers"], 0, voices, variants)
    assert len({voice_config(s) for s in espeak}) == full["speakers"] >= 1000
    flite = flite_speakers(full["flite_speakers"], 0, ("awb", "rms", "slt", "kal16"))
    assert len({voice_config(s) for s in flite}) == full["flite_speakers"]


def test_keywords_parameter_validation():
    assert synth._params(keywords="marvin, lights  on ,hey nni")["keywords"] == ["marvin", "lights on", "hey nni"]
    assert "marvin" not in synth._params(keywords="marvin,go")["words"][2:]  # a keyword is never _unknown_
    assert synth._params(words=("yes", "bed"))["keywords"] == ["yes"]  # legacy: the keywords among words
    with pytest.raises(ValueError, match="keywords"):
        synth._params(keywords="_silence_")
    with pytest.raises(ValueError, match="pass keywords"):
        synth._params(words=("bed", "cat"))
    with pytest.raises(ValueError, match="unknown synthesis preset"):
        synthesize_dataset("/nonexistent", preset="huge")
