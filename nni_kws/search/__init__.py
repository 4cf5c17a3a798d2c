"""One-shot architecture search on :class:`~nni_kws.space.KwsSpace`: resource-aware DARTS and the search
driver :func:`run_search` (the 1-D mixed operations live with the space, in :mod:`nni_kws.space.mixed_ops`)."""
from .evolution import CandidateScorer, evolution_search, random_archs
from .history import SearchHistory
from .oneshot import STRATEGIES, SearchResult, make_strategy, run_search
from .penalty import FORMS, RESOURCES, ResourcePenalty, penalized_loss
from .recalibrate import calibration_batches, inherited_model, recalibrate_bn
from .strategy import ResourceDARTS, ResourceGumbelDARTS, ResourceProxyless, arch_probs, argmax_arch

__all__ = ["STRATEGIES", "SearchResult",
           "make_strategy", "run_search", "FORMS", "RESOURCES", "ResourcePenalty", "penalized_loss", "ResourceDARTS",
           "ResourceGumbelDARTS", "ResourceProxyless", "SearchHistory", "arch_probs", "argmax_arch",
           "CandidateScorer", "evolution_search", "random_archs", "calibration_batches", "inherited_model",
           "recalibrate_bn"]
