"""Speech Commands data pipeline: WAV loading, 12-class subsets, augmentation, bad files, DataModule."""
from __future__ import annotations

import json
import logging
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from nni_kws.data import AudioFileError, SpeechCommands, SpeechCommandsTestFolder, load_clip, scan_clips
from nni_kws.data.audio import LOAD_STATS
from nni_kws.data.labels import CLASS_INDEX, CLASSES, KEYWORDS

SILENCE, UNKNOWN = CLASS_INDEX["_silence_"], CLASS_INDEX["_unknown_"]


def _write(path: Path, x: np.ndarray, sr: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), sr, subtype="PCM_16")
    return path


def _tone(n: int, sr: int = 16000, f: float = 440.0) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * f * np.arange(n) / sr)


def _bad_files(d: Path) -> dict[str, Path]:
    """One unusable file of each kind, all named *.wav."""
    d.mkdir(parents=True, exist_ok=True)
    good = (_write(d / "good.wav", _tone(16000))).read_bytes()
    files = {"corrupt": d / "corrupt.wav", "empty": d / "empty.wav", "text": d / "text.wav",
             "truncated": d / "truncated.wav", "header_only": d / "header_only.wav"}
    files["corrupt"].write_bytes(np.random.default_rng(0).bytes(3000))
    files["empty"].write_bytes(b"")
    files["text"].write_text("this is not audio\n" * 20)
    files["truncated"].write_bytes(good[:20000])
    files["header_only"].write_bytes(good[:44])
    return files


@pytest.fixture
def gsc_copy(tiny_gsc, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_gsc, tmp_path / "gsc"))


# --- load_clip / scan_clips ---------------------------------------------------------------------

def test_load_clip_shapes_padding_cropping(tmp_path):
    x = load_clip(_write(tmp_path / "a.wav", _tone(16000)))
    assert x.shape == (1, 16000) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.from_numpy(_tone(16000)).float(), atol=1e-4)
    short = load_clip(_write(tmp_path / "short.wav", _tone(9000)))
    assert short.shape == (1, 16000) and short[0, 9000:].abs().max() == 0 and short[0, :9000].abs().max() > 0.4
    ramp = np.linspace(-0.9, 0.9, 20000)
    long = load_clip(_write(tmp_path / "long.wav", ramp))
    assert long.shape == (1, 16000)
    assert long[0, 0] == pytest.approx(ramp[2000], abs=1e-4)  # center crop drops 2000 samples each side
    assert load_clip(tmp_path / "long.wav", num_samples=None).shape == (1, 20000)


def test_load_clip_stereo_and_resampling(tmp_path):
    left, right = _tone(16000), np.zeros(16000)
    x = load_clip(_write(tmp_path / "stereo.wav", np.stack([left, right], 1)))
    assert x.shape == (1, 16000)
    assert torch.allclose(x[0], torch.from_numpy(left / 2).float(), atol=1e-4)

    before = LOAD_STATS["resampled"]
    y = load_clip(_write(tmp_path / "8k.wav", _tone(8000, sr=8000, f=440.0), sr=8000))
    assert y.shape == (1, 16000) and LOAD_STATS["resampled"] == before + 1
    peak_hz = torch.fft.rfft(y[0]).abs().argmax().item()  # 1 Hz per bin for 16000 samples at 16 kHz
    assert abs(peak_hz - 440) <= 2


@pytest.mark.parametrize("kind", ["corrupt", "empty", "text", "truncated", "header_only"])
def test_bad_file_errors_name_the_file(tmp_path, kind):
    path = _bad_files(tmp_path)[kind]
    with pytest.raises(AudioFileError, match=path.name) as err:
        load_clip(path)
    assert isinstance(err.value, ValueError) and err.value.path == str(path)
    with pytest.raises(AudioFileError, match=path.name):
        scan_clips([tmp_path / "good.wav", path], on_error="raise")
    restored = pickle.loads(pickle.dumps(err.value))
    assert (restored.path, restored.reason) == (err.value.path, err.value.reason)


def test_scan_clips_skips_with_one_warning(tmp_path, caplog):
    bad = _bad_files(tmp_path)
    paths = [tmp_path / "good.wav", *bad.values()]
    with caplog.at_level(logging.WARNING, logger="nni_kws.data.audio"):
        good = scan_clips(paths)
    assert good == [tmp_path / "good.wav"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "skipped 5 of 6" in warnings[0].getMessage() and "corrupt.wav" in warnings[0].getMessage()
    with pytest.raises(AudioFileError, match="and 4 more"):
        scan_clips(paths, on_error="raise")


# --- SpeechCommands: layout, labels, splits, proportions ----------------------------------------

def test_labels_and_shapes(tiny_gsc):
    ds = SpeechCommands(tiny_gsc, "training")
    assert len(ds) == len(ds.labels) == 50
    for path, label in zip(ds.files, ds.labels):
        if path is None:
            assert label == SILENCE
        else:
            word = Path(path).parent.name
            assert label == (CLASS_INDEX[word] if word in KEYWORDS else UNKNOWN)
    for i in (0, 17, len(ds) - 1):
        x, y = ds[i]
        assert x.shape == (1, 16000) and x.dtype == torch.float32 and y == ds.labels[i]
        assert x.abs().max() <= 1


def test_splits_follow_lists_and_are_speaker_disjoint(tiny_gsc):
    listed = {name: set((tiny_gsc / f"{name}_list.txt").read_text().split()) for name in ("validation", "testing")}
    speakers = {}
    for subset in ("training", "validation", "testing"):
        ds = SpeechCommands(tiny_gsc, subset, unknown_fraction=0.3)  # keep every unknown clip in reach
        rel = {str(Path(p).relative_to(tiny_gsc)) for p in ds.files if p is not None}
        if subset == "training":
            assert not rel & (listed["validation"] | listed["testing"])
        else:
            assert rel <= listed[subset] and {r for r in listed[subset] if r.split("/")[0] in KEYWORDS} <= rel
        speakers[subset] = {Path(r).name.split("_nohash_")[0] for r in rel}
    assert len(speakers["training"]) == 2
    assert not (speakers["training"] & speakers["validation"] or speakers["training"] & speakers["testing"]
                or speakers["validation"] & speakers["testing"])


def test_unknown_and_silence_proportions(tiny_gsc):
    counts = SpeechCommands(tiny_gsc, "training").class_counts()
    assert list(counts) == list(CLASSES)
    assert all(counts[k] == 4 for k in KEYWORDS)
    assert counts["_unknown_"] == counts["_silence_"] == 5  # round(0.1 / 0.8 * 40): 10% of 50 each
    counts = SpeechCommands(tiny_gsc, "training", unknown_fraction=0.2, silence_fraction=0.0).class_counts()
    assert counts["_unknown_"] == 10 and counts["_silence_"] == 0
    counts = SpeechCommands(tiny_gsc, "training", max_per_class=2, silence_fraction=0.3).class_counts()
    assert all(counts[k] == 2 for k in KEYWORDS) and counts["_unknown_"] == 2 and counts["_silence_"] == 2


def test_subsets_are_deterministic_in_seed(tiny_gsc):
    a, b = (SpeechCommands(tiny_gsc, "training", seed=0, max_per_class=3) for _ in range(2))
    assert a.files == b.files
    others = [SpeechCommands(tiny_gsc, "training", seed=s, max_per_class=3).files for s in (1, 2, 3)]
    assert any(files != a.files for files in others)


def test_missing_or_malformed_dataset(tmp_path, gsc_copy):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        SpeechCommands(tmp_path / "nowhere", "training")
    with pytest.raises(ValueError, match="subset"):
        SpeechCommands(gsc_copy, "train")
    with pytest.raises(FileNotFoundError, match="nowhere_noise"):
        SpeechCommands(gsc_copy, "training", noise_dir=tmp_path / "nowhere_noise")
    (gsc_copy / "testing_list.txt").unlink()
    with pytest.raises(FileNotFoundError, match="testing_list.txt"):
        SpeechCommands(gsc_copy, "training")
    empty = tmp_path / "empty"
    (empty / "_background_noise_").mkdir(parents=True)
    for name in ("validation_list.txt", "testing_list.txt"):
        (empty / name).write_text("")
    with pytest.raises(ValueError, match="no word folders"):
        SpeechCommands(empty, "training")


# --- augmentation ---------------------------------------------------------------------------------

def _find_shift(x: torch.Tensor, clean: torch.Tensor, max_shift: int) -> int | None:
    for k in range(-max_shift, max_shift + 1):
        shifted = torch.nn.functional.pad(clean, (max(k, 0), max(-k, 0)))[..., max(-k, 0):max(-k, 0) + 16000]
        if torch.equal(x, shifted):
            return k
    return None


def test_time_shift_only(tiny_gsc):
    ds = SpeechCommands(tiny_gsc, "training", noise_prob=0.0)
    shifts = []
    for i in range(0, 40, 5):
        clean = load_clip(ds.files[i])
        k = _find_shift(ds[i][0], clean, 1600)
        assert k is not None  # exactly the clean clip moved by at most 100 ms, zero-filled
        shifts.append(k)
    assert any(k != 0 for k in shifts)
    plain = SpeechCommands(tiny_gsc, "training", augment=False)
    assert torch.equal(plain[0][0], load_clip(plain.files[0]))


def test_noise_mixing_is_bounded_and_reproducible(tiny_gsc):
    ds = SpeechCommands(tiny_gsc, "training", noise_prob=1.0, time_shift_ms=0)
    clean = load_clip(ds.files[3])
    x1 = ds[3][0]
    assert not torch.equal(x1, clean) and x1.abs().max() <= 1
    assert not torch.equal(ds[3][0], x1)  # a new draw each time the item is read (each epoch)
    again = SpeechCommands(tiny_gsc, "training", noise_prob=1.0, time_shift_ms=0)
    assert torch.equal(again[3][0], x1)  # same seed, same draws
    other = SpeechCommands(tiny_gsc, "training", noise_prob=1.0, time_shift_ms=0, seed=1)
    assert not torch.equal(other[other.files.index(ds.files[3])][0], x1)
    loud = SpeechCommands(tiny_gsc, "training", noise_prob=1.0, noise_volume=50.0)
    xs = torch.cat([loud[i][0] for i in range(10)])
    assert xs.abs().max() == 1.0  # clamped to [-1, 1]


def test_silence_items(tiny_gsc, gsc_copy):
    train = SpeechCommands(tiny_gsc, "training")
    i = train.labels.index(SILENCE)
    assert train[i][0].abs().max() > 0 and train[i][0].abs().max() <= 1
    val = SpeechCommands(tiny_gsc, "validation")
    j = val.labels.index(SILENCE)
    x = val[j][0]
    assert (x.abs().max() > 0 and torch.equal(x, val[j][0])
            and torch.equal(x, SpeechCommands(tiny_gsc, "validation")[j][0]))
    shutil.rmtree(gsc_copy / "_background_noise_")
    quiet = SpeechCommands(gsc_copy, "training")
    assert quiet[quiet.labels.index(SILENCE)][0].abs().max() == 0


# --- bad files inside a dataset ---------------------------------------------------------------------

def test_dataset_skips_or_raises_on_bad_files(gsc_copy, caplog):
    bad = _bad_files(gsc_copy / "tmp_bad")
    for kind, path in bad.items():
        shutil.move(path, gsc_copy / "yes" / f"bad{kind}_nohash_0.wav")
    shutil.rmtree(gsc_copy / "tmp_bad")
    _write(gsc_copy / "no" / "stereo_nohash_0.wav", np.stack([_tone(16000), _tone(16000)], 1))
    _write(gsc_copy / "up" / "slow_nohash_0.wav", _tone(8000, sr=8000), sr=8000)
    with caplog.at_level(logging.WARNING):
        ds = SpeechCommands(gsc_copy, "training")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 5 of" in warnings[0] and "badcorrupt_nohash_0.wav" in warnings[0]
    names = {Path(p).name for p in ds.files if p}
    assert not any(n.startswith("bad") for n in names) and {"stereo_nohash_0.wav", "slow_nohash_0.wav"} <= names
    for name in ("stereo_nohash_0.wav", "slow_nohash_0.wav"):
        x, _ = SpeechCommands(gsc_copy, "training", augment=False)[
            [Path(p).name if p else None for p in ds.files].index(name)]
        assert x.shape == (1, 16000)
    with pytest.raises(AudioFileError, match=r"yes/bad\w+_nohash_0.wav"):
        SpeechCommands(gsc_copy, "training", on_error="raise")


def test_file_turning_bad_after_scan_raises_with_path(gsc_copy):
    ds = SpeechCommands(gsc_copy, "validation", augment=False)
    path = Path(ds.files[0])
    path.write_text("gone bad")
    with pytest.raises(AudioFileError, match=path.name):
        ds[0]
    loader = DataLoader(ds, batch_size=4, num_workers=1)
    with pytest.raises(AudioFileError, match=path.name):  # re-raised in the main process, same type
        next(iter(loader))


# --- pickling / NNI tracing ------------------------------------------------------------------------

def test_pickle_and_nni_trace(tiny_gsc):
    import nni

    ds = SpeechCommands(str(tiny_gsc), "training", cache=True, max_per_class=2)
    x = ds[0][0]
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.files == ds.files and clone._cache == {} and clone[0][0].shape == x.shape
    traced = nni.trace(SpeechCommands)(str(tiny_gsc), "validation", max_per_class=2)
    loaded = nni.load(nni.dump(traced))
    assert loaded.files == traced.files and loaded.labels == traced.labels


# --- the pre-split test folder ------------------------------------------------------------------------

def test_test_folder_layout(tmp_path):
    root = tmp_path / "test_set"
    for i, c in enumerate(CLASSES):
        name = "bed_0a1b2c3d_nohash_0.wav.wav" if c == "_unknown_" else f"{i:08x}_nohash_0.wav"
        _write(root / c / name, _tone(16000, f=300 + 50 * i))
    (root / "README.md").write_text("readme")
    ds = SpeechCommandsTestFolder(root)
    assert len(ds) == 12 and ds.labels == list(range(12))
    assert all(ds[i][0].shape == (1, 16000) for i in range(12))
    shutil.rmtree(root / "_silence_")
    with pytest.raises(ValueError, match="_silence_"):
        SpeechCommandsTestFolder(root)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        SpeechCommandsTestFolder(tmp_path / "nowhere")


def test_real_test_folder(real_test_root):
    ds = SpeechCommandsTestFolder(real_test_root, on_error=None)  # file list only, nothing decoded
    assert len(ds) == 4890
    counts = ds.class_counts()
    assert all(counts[c] > 0 for c in CLASSES)
    assert counts == {c: len(list((real_test_root / c).glob("*.wav"))) for c in CLASSES}
    assert any(p.endswith(".wav.wav") for p in ds.files)
    for i in (0, 1234, 4889):
        x, y = ds[i]
        assert x.shape == (1, 16000) and x.dtype == torch.float32 and y == CLASS_INDEX[Path(ds.files[i]).parent.name]


# --- DataModule ------------------------------------------------------------------------------------------

def test_datamodule(tiny_gsc, tmp_path):
    from nni_kws.data import SpeechCommandsDataModule

    real = tmp_path / "real"
    for i, c in enumerate(CLASSES):
        _write(real / c / "0a1b2c3d_nohash_0.wav", _tone(16000, f=300 + 50 * i))
    dm = SpeechCommandsDataModule(tiny_gsc, batch_size=8, seed=0, cache=True, real_test_root=real)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 1, 16000) and y.dtype == torch.int64
    assert sum(len(b[1]) for b in dm.val_dataloader()) == 12
    assert sum(len(b[1]) for b in dm.test_dataloader()) == 12
    assert sum(len(b[1]) for b in dm.real_test_dataloader()) == 12
    assert len(dm.dataset("training")._cache) == 45  # every non-silence clip decoded once
    first = [b[1].tolist() for b in SpeechCommandsDataModule(tiny_gsc, batch_size=8, seed=0).train_dataloader()]
    again = [b[1].tolist() for b in SpeechCommandsDataModule(tiny_gsc, batch_size=8, seed=0).train_dataloader()]
    assert first == again  # shuffling is seeded
    with pytest.raises(ValueError, match="real_test_root"):
        SpeechCommandsDataModule(tiny_gsc).real_test_dataloader()


# --- evaluation data problems are errors (reliability audit 5.8, 5.9, 5.12) ----------------------------

def test_missing_keyword_class_is_an_error(gsc_copy, capsys):
    from nni_kws.cli import main

    shutil.rmtree(gsc_copy / "yes")
    for name in ("validation_list.txt", "testing_list.txt"):
        path = gsc_copy / name
        path.write_text("".join(ln + "\n" for ln in path.read_text().split() if not ln.startswith("yes/")))
    with pytest.raises(ValueError, match="training subset .*no clips of keyword class 'yes'"):
        SpeechCommands(gsc_copy, "training")
    assert main(["data", "check", str(gsc_copy), "-q"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["ok"] and any("'yes'" in p for p in report["problems"])


def test_unreadable_evaluation_clip_raises_and_missing_entries_are_counted(gsc_copy, caplog):
    from nni_kws.data import SpeechCommandsDataModule

    val_file = next(r for r in sorted((gsc_copy / "validation_list.txt").read_text().split()) if r.startswith("yes/"))
    (gsc_copy / val_file).write_text("not audio")
    with pytest.raises(AudioFileError, match=Path(val_file).name):
        SpeechCommands(gsc_copy, "validation")
    with pytest.raises(AudioFileError, match=Path(val_file).name):
        SpeechCommandsDataModule(gsc_copy, on_error="skip").dataset("validation")
    with pytest.raises(ValueError, match="no clips of keyword class 'yes'"):  # skipping it would empty 'yes'
        SpeechCommands(gsc_copy, "validation", on_error="skip")
    with (gsc_copy / "testing_list.txt").open("a") as f:
        f.write("yes/ffffffff_nohash_0.wav\nno/ffffffff_nohash_0.wav\n")
    with caplog.at_level(logging.WARNING):
        SpeechCommands(gsc_copy, "testing")
    assert any("testing_list.txt: 2 listed files do not exist" in r.getMessage() for r in caplog.records)
