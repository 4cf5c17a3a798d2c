"""``nni_kws.tuner.HardwareAwareTuner``: the class path registered in ``examples/nnictl/meta.yml`` (kept as a
public path); the code lives in :mod:`nni_kws.nnictl.tuner`."""
from nni_kws.nnictl.tuner import HardwareAwareClassArgsValidator, HardwareAwareTuner

__all__ = ["HardwareAwareTuner", "HardwareAwareClassArgsValidator"]
