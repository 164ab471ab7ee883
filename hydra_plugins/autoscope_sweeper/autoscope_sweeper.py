"""The AutoSCOPE sweeper as a Hydra plugin (see `autoscope.hpo.sweeper`)."""

from autoscope.hpo.sweeper import AutoscopeSweeper as _Impl


class AutoscopeSweeper(_Impl):
    """Grid sweeps like Hydra's basic sweeper; an Optuna study when `hpo=<space>` is chosen."""
