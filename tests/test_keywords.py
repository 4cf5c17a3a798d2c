"""Custom keyword lists: classes come from the dataset (manifest), 12 Speech Commands classes by default."""
from __future__ import annotations

from pathlib import Path

import pytest

from nni_kws.data import CLASSES, SpeechCommandsDataModule, class_names, dataset_keywords, parse_keywords
from nni_kws.data.synth import _words, synthesize_dataset


@pytest.fixture(scope="module")
def wake_words(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize_dataset(tmp_path_factory.mktemp("kw") / "ds", speakers=6, keywords="marvin,lights on,hey nni",
                              words="marvin,lights on,hey nni,bed,cat", noise_seconds=1, progress=False)


def test_custom_keywords_datamodule(wake_words: Path, tiny_gsc: Path):
    assert dataset_keywords(wake_words) == ("marvin", "lights on", "hey nni")
    dm = SpeechCommandsDataModule(wake_words, batch_size=8)
    assert dm.classes == ("marvin", "lights on", "hey nni", "_silence_", "_unknown_") and dm.num_classes == 5
    train = dm.dataset("training")
    assert train.classes == dm.classes
    counts = train.class_counts()
    assert all(counts[c] > 0 for c in dm.classes)  # every class, _unknown_ from bed/cat, _silence_ from noise
    unknown = {Path(f).parent.name for f, y in zip(train.files, train.labels) if y == train.unknown_index}
    assert unknown <= {"bed", "cat"}
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 1, 16000) and int(y.max()) < 5
    with pytest.raises(ValueError, match="12 Speech Commands classes"):
        SpeechCommandsDataModule(wake_words, real_test_root=tiny_gsc).real_test_dataloader()
    # the default stays the 12-class protocol, for real copies (no manifest) and explicit keywords alike
    assert SpeechCommandsDataModule(tiny_gsc).classes == CLASSES
    assert SpeechCommandsDataModule(wake_words, keywords=["marvin"]).num_classes == 3


def test_parse_keywords():
    assert parse_keywords(" Marvin ,lights   on,") == ("Marvin", "lights on")
    assert class_names(("a",)) == ("a", "_silence_", "_unknown_")
    for bad in ("", "a,a", "yes,Yes", "_unknown_", "x/y"):
        with pytest.raises(ValueError, match="keywords"):
            parse_keywords(bad)


def test_a_keyword_in_capitals_is_not_also_synthesized_as_an_unknown_word():
    words, keys = _words("yes,No,cat", "YES,No")
    assert keys == ["YES", "No"] and words == ["YES", "No", "cat"]
