"""The end-to-end job: search → retrain → quantize → report in a resumable run folder, and sweeps.

:mod:`.config` holds the options, :mod:`.stages` the stages, :mod:`.results` the ``results.json``
assembly, :mod:`.sweep` the Pareto sweeps and :mod:`.commands` the ``nni-kws search|train|run|sweep`` CLI.
"""
from .config import IDENTITY_FIELDS, STAGES, PipelineConfig, check_inputs, default_real_test_root, load_config
from .data import make_data_module
from .rundir import stage_done
from .stages import Pipeline, run_pipeline
from .sweep import SweepPlan, run_sweep

__all__ = ["STAGES", "IDENTITY_FIELDS", "PipelineConfig", "Pipeline", "SweepPlan", "check_inputs",
           "default_real_test_root", "load_config", "make_data_module", "run_pipeline", "run_sweep", "stage_done"]
