"""Hydra discovers sweepers only under the `hydra_plugins` namespace: this is AutoSCOPE's.

The implementation lives in `autoscope.hpo.sweeper`; `conf/hydra/sweeper/autoscope.yaml` selects it.
"""
