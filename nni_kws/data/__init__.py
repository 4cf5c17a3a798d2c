"""Speech Commands data: reading, augmenting and synthesizing it."""
from .audio import AudioFileError, load_clip, scan_clips
from .augment import TrainAugment
from .gsc import SpeechCommands, SpeechCommandsTestFolder
from .labels import (
    CLASSES,
    CLIP_SAMPLES,
    KEYWORDS,
    NUM_CLASSES,
    SAMPLE_RATE,
    UNKNOWN_WORDS,
    class_names,
    dataset_keywords,
    parse_keywords,
)
from .listed import ListedClips, read_list, speaker_of, speaker_split
from .paths import shared_data_dir

__all__ = ["AudioFileError", "load_clip", "scan_clips", "TrainAugment", "SpeechCommands", "SpeechCommandsTestFolder",
           "CLASSES", "CLIP_SAMPLES", "KEYWORDS", "NUM_CLASSES", "SAMPLE_RATE", "UNKNOWN_WORDS", "class_names",
           "dataset_keywords", "parse_keywords", "ListedClips", "read_list", "speaker_of", "speaker_split",
           "shared_data_dir", "SpeechCommandsDataModule"]


def __getattr__(name: str):
    # Lazy: importing pytorch_lightning takes seconds, and most users of this package don't need it.
    if name == "SpeechCommandsDataModule":
        from .datamodule import SpeechCommandsDataModule
        return SpeechCommandsDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
