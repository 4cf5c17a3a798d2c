"""The KWS search space, declared with NNI's mutable modules."""
from .arch import (InvalidArchitecture, build_model, build_space, load_arch, random_arch, save_arch, search_space_json,
                   space_choices, space_kwargs, validate_arch)
from .blocks import MBConv1d, SincConv1d, bake_sinc
from .kws_space import PRESETS, KwsSpace, StagePlan

__all__ = ["KwsSpace", "StagePlan", "PRESETS", "MBConv1d", "SincConv1d", "bake_sinc", "InvalidArchitecture",
           "build_model", "build_space", "load_arch", "random_arch", "save_arch", "search_space_json", "space_choices",
           "space_kwargs", "validate_arch"]
