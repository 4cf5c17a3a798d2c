"""``python -m nni_kws.trial``: the trial command named in ``examples/nnictl/*.yml`` (kept as a public
path); the code lives in :mod:`nni_kws.nnictl.trial`."""
import sys

from nni_kws.nnictl.trial import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
