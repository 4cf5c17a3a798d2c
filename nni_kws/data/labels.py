"""The 12-class Speech Commands protocol: 10 keywords, ``_silence_`` and ``_unknown_``."""
from __future__ import annotations

KEYWORDS: tuple[str, ...] = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SILENCE = "_silence_"
UNKNOWN = "_unknown_"
CLASSES: tuple[str, ...] = KEYWORDS + (SILENCE, UNKNOWN)
NUM_CLASSES = len(CLASSES)
CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}

# The other Speech Commands words: 20 in v1, 25 in v2 (backward ... visual).
UNKNOWN_WORDS: tuple[str, ...] = (
    "bed", "bird", "cat", "dog", "eight", "five", "four", "happy", "house", "marvin", "nine",
    "one", "seven", "sheila", "six", "three", "tree", "two", "wow", "zero",
    "backward", "follow", "forward", "learn", "visual",
)
SAMPLE_RATE = 16000
CLIP_SAMPLES = 16000
BACKGROUND_NOISE_DIR = "_background_noise_"
