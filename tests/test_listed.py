"""List-defined subsets (the real-speech protocols): lists, speaker-disjoint validation, augmentation, DataModule."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from nni_kws.data import AudioFileError, ListedClips, load_clip, read_list, shared_data_dir, speaker_of, speaker_split
from nni_kws.data.labels import CLASS_INDEX
from nni_kws.data.paths import SHARED_DATA_ENV, SPLITS_DIR


@pytest.fixture
def listed(tiny_gsc, tmp_path) -> tuple[Path, Path]:
    """A copy of the tiny set plus a ``_silence_`` folder, and a list of all of its clips."""
    root = Path(shutil.copytree(tiny_gsc, tmp_path / "clips"))
    (root / "_silence_").mkdir()
    for n in range(3):
        sf.write(root / "_silence_" / f"{n}.wav", np.full(16000, 0.01 * (n + 1), np.float32), 16000, subtype="PCM_16")
    rels = sorted(p.relative_to(root).as_posix() for p in root.glob("*/*.wav") if p.parent.name != "_background_noise_")
    list_file = tmp_path / "all.txt"
    list_file.write_text("# every clip\n" + "\n".join(rels) + "\n\n")
    return root, list_file


def test_read_list_and_speakers(listed, tmp_path):
    root, list_file = listed
    rels = read_list(list_file)
    assert len(rels) == 13 * 6 + 3 and rels[0].startswith("_silence_/")
    assert speaker_of("yes/0a1b2c3d_nohash_1.wav") == "0a1b2c3d"
    assert speaker_of("_unknown_/bed_0A1B2C3D_nohash_0.wav.wav") == "0a1b2c3d"
    assert speaker_of("_silence_/12.wav") == "_silence_/12.wav" and speaker_of("mine/clip.wav") == "mine/clip.wav"
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        read_list(tmp_path / "nowhere.txt")
    (tmp_path / "empty.txt").write_text("\n# nothing\n")
    with pytest.raises(ValueError, match="empty.txt: the list is empty"):
        read_list(tmp_path / "empty.txt")
    (tmp_path / "abs.txt").write_text("/etc/passwd\n")
    with pytest.raises(ValueError, match="abs.txt: entry '/etc/passwd'"):
        read_list(tmp_path / "abs.txt")


def test_speaker_split_is_disjoint_and_deterministic(listed):
    rels = read_list(listed[1])
    train, val = speaker_split(rels, 0.3)
    assert sorted(train + val) == sorted(rels) and (train, val) == speaker_split(list(rels), 0.3)
    train_spk, val_spk = {speaker_of(r) for r in train}, {speaker_of(r) for r in val}
    assert not train_spk & val_spk
    assert len(val_spk) == round(0.3 * 7)  # 4 speakers + 3 silence clips
    assert speaker_split(rels, 0.3, salt="other") != (train, val)
    with pytest.raises(ValueError, match="val_fraction"):
        speaker_split(rels, 1.0)


def test_speaker_split_folds_hold_apart_disjoint_speakers(listed):
    """Cross-validation folds: fold 0 is the default split, and the folds' validation speakers do not overlap."""
    rels = read_list(listed[1])  # 7 speakers (4 + 3 silence clips): blocks of round(0.3 * 7) = 2, folds 0..2
    assert speaker_split(rels, 0.3, fold=0) == speaker_split(rels, 0.3)
    vals = [{speaker_of(r) for r in speaker_split(rels, 0.3, fold=i)[1]} for i in range(3)]
    assert [len(v) for v in vals] == [2, 2, 2] and len(set().union(*vals)) == 6
    for i in range(3):
        train, val = speaker_split(rels, 0.3, fold=i)
        assert sorted(train + val) == sorted(rels) and not {speaker_of(r) for r in train} & vals[i]
    with pytest.raises(ValueError, match="validation fold 3 does not exist: 7 speakers in blocks of 2"):
        speaker_split(rels, 0.3, fold=3)


def test_labels_parts_and_augmentation(listed, tiny_gsc):
    root, list_file = listed
    noise = tiny_gsc / "_background_noise_"
    whole = ListedClips(root, list_file)
    assert len(whole) == 81 and not whole.augment
    for path, label in zip(whole.files, whole.labels):
        folder = Path(path).parent.name
        assert label == CLASS_INDEX.get(folder, CLASS_INDEX["_unknown_"])
    assert whole.class_counts()["_unknown_"] == 18 and whole.class_counts()["_silence_"] == 3
    assert torch.equal(whole[5][0], load_clip(whole.files[5]))
    train = ListedClips(root, list_file, "train", val_fraction=0.3, noise_dir=noise)
    val = ListedClips(root, list_file, "val", val_fraction=0.3)
    assert train.augment and not val.augment and len(train) + len(val) == 81
    assert not {speaker_of(Path(p).relative_to(root).as_posix()) for p in train.files} & \
        {speaker_of(Path(p).relative_to(root).as_posix()) for p in val.files}
    x = train[0][0]
    assert not torch.equal(x, load_clip(train.files[0])) and x.abs().max() <= 1
    again = ListedClips(root, list_file, "train", val_fraction=0.3, noise_dir=noise)
    assert torch.equal(again[0][0], x)  # seeded augmentation
    capped = ListedClips(root, list_file, max_per_class=2)
    assert all(n == 2 for n in capped.class_counts().values())


def test_missing_and_bad_clips_name_the_list(listed, caplog):
    root, list_file = listed
    clean = list_file.read_text()
    list_file.write_text(clean + "yes/ffffffff_nohash_9.wav\nno/eeeeeeee_nohash_9.wav\n")
    with pytest.raises(FileNotFoundError, match=r"all.txt: 2 of 83 listed clips are missing .*ffffffff_nohash_9"):
        ListedClips(root, list_file)
    with caplog.at_level(logging.WARNING):
        ds = ListedClips(root, list_file, on_error="skip")
    assert len(ds) == 81 and any("skipped 2 of 83" in r.getMessage() for r in caplog.records)
    list_file.write_text(clean)
    bad = sorted((root / "yes").iterdir())[0]
    bad.write_text("not audio")
    with pytest.raises(AudioFileError, match=bad.name):  # evaluation data raises by default
        ListedClips(root, list_file)
    assert len(ListedClips(root, list_file, "train", val_fraction=0.3)) + \
        len(ListedClips(root, list_file, "val", val_fraction=0.3, on_error="skip")) == 80  # training skips
    with pytest.raises(FileNotFoundError, match="clip folder not found"):
        ListedClips(root / "nowhere", list_file)
    # a list of one speaker's clip, or of clips that are all missing: errors naming the list
    one = list_file.with_name("one.txt")
    one.write_text("yes/ffffffff_nohash_9.wav\n")
    with pytest.raises(ValueError, match=r"one.txt: cannot split 1 clips of 1 speaker"):
        ListedClips(root, one, "train")
    one.write_text("yes/ffffffff_nohash_9.wav\nno/eeeeeeee_nohash_9.wav\n")
    with pytest.raises(FileNotFoundError, match=r"one.txt: 1 of 1 listed clips are missing"):
        ListedClips(root, one, "train", val_fraction=0.5)  # training would skip them, but there is nothing left


def test_datamodule_list_protocol(listed, tiny_gsc, tmp_path):
    from nni_kws.data import SpeechCommandsDataModule

    root, list_file = listed
    rels = read_list(list_file)
    dev = [r for r in rels if speaker_of(r) != speaker_of(rels[-1])]
    (tmp_path / "dev.txt").write_text("\n".join(dev))
    (tmp_path / "heldout.txt").write_text("\n".join(r for r in rels if r not in dev))
    dm = SpeechCommandsDataModule(root, batch_size=16, train_list=tmp_path / "dev.txt", val_fraction=0.3,
                                  test_list=tmp_path / "heldout.txt", noise_dir=tiny_gsc / "_background_noise_")
    n_train = sum(len(b[1]) for b in dm.train_dataloader())
    n_val = sum(len(b[1]) for b in dm.val_dataloader())
    assert n_train + n_val == len(dev) and n_val > 0
    assert sum(len(b[1]) for b in dm.test_dataloader()) == len(rels) - len(dev) == 13
    # another fold: other speakers held apart (one with a speaker of every keyword, not only silence clips), the
    # same clips and test list
    i = next(i for i in range(1, 3) if any("_silence_" not in r for r in speaker_split(dev, 0.3, fold=i)[1]))
    fold = dm.val_folds(i + 1)[i]
    assert dm.val_folds(i + 1)[0] is dm
    assert dm.val_folds(i + 2)[i] is fold  # kept: a later search reuses its decoded clips
    val_files, fold_val_files = (set(d.dataset("validation").files) for d in (dm, fold))
    assert val_files and fold_val_files and not val_files & fold_val_files
    assert set(fold.dataset("training").files) | fold_val_files == set(dm.dataset("training").files) | val_files
    assert fold.dataset("testing").files == dm.dataset("testing").files
    with pytest.raises(ValueError, match="need a train_list"):
        SpeechCommandsDataModule(root, test_list=tmp_path / "heldout.txt")
    with pytest.raises(ValueError, match="val_fold 1 needs a train_list"):
        SpeechCommandsDataModule(root, val_fold=1)


def test_shared_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(SHARED_DATA_ENV, str(tmp_path))
    (tmp_path / "gsc-v2-test").mkdir()
    assert shared_data_dir() == tmp_path and shared_data_dir("gsc-v2-test") == tmp_path / "gsc-v2-test"
    assert shared_data_dir("nothing") is None
    with pytest.raises(FileNotFoundError, match=f"nothing.*{SHARED_DATA_ENV}|{tmp_path}/nothing"):
        shared_data_dir("nothing", required=True)


def test_real_dev_heldout_protocol():
    """The shared data's protocol through the data module: dev's speakers split into training and validation,
    heldout's speakers in neither, recorded noise in the training augmentation."""
    from nni_kws.data import SpeechCommandsDataModule

    if shared_data_dir(SPLITS_DIR) is None:
        pytest.skip("shared real-speech data not found")
    dm = SpeechCommandsDataModule.real_protocol(on_error=None)
    train, val, heldout = (dm.dataset(subset) for subset in ("training", "validation", "testing"))
    assert (len(train) + len(val), len(heldout)) == (2656, 2234)
    assert heldout.class_counts()["_silence_"] == 195 and all(n > 0 for n in val.class_counts().values())
    speakers = [{speaker_of(str(Path(f).relative_to(dm.root))) for f in ds.files if "_silence_" not in f}
                for ds in (train, val, heldout)]
    assert not speakers[0] & speakers[1] and not (speakers[0] | speakers[1]) & speakers[2]
    assert train._noises() and not val.augment
