"""The KWS search space, declared with NNI's mutable modules."""
from .arch import (
                   SPACE_KEYS,
                   InvalidArchitecture,
                   active_arch,
                   arch_file_meta,
                   arch_file_space,
                   build_model,
                   build_space,
                   describe_arch,
                   load_arch,
                   parse_space_name,
                   random_arch,
                   save_arch,
                   search_space_json,
                   space_by_name,
                   space_choices,
                   space_kwargs,
                   space_name,
                   validate_arch,
)
from .blocks import MBConv1d, SincConv1d, bake_sinc
from .kws_space import PRESETS, KwsSpace, StagePlan
from .labels import FRONTEND_LABEL
from .searched import SEARCHED, SearchedArch, load_searched_model
from .trained import load_trained_model

__all__ = ["KwsSpace", "StagePlan", "PRESETS", "FRONTEND_LABEL", "MBConv1d", "SincConv1d", "bake_sinc",
           "InvalidArchitecture", "SPACE_KEYS", "active_arch", "arch_file_meta", "arch_file_space", "build_model",
           "build_space", "describe_arch", "load_arch", "random_arch", "save_arch", "search_space_json",
           "space_choices", "parse_space_name", "space_by_name", "space_kwargs", "space_name", "validate_arch",
           "SEARCHED", "SearchedArch", "load_searched_model", "load_trained_model"]
