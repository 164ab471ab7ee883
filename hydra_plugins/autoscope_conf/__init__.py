"""AutoSCOPE's config groups for any Hydra app that composes a recipe, DVC's included.

Hydra discovers search-path plugins under the `hydra_plugins` namespace. This one appends the
installed `autoscope/conf/` (the vocabulary: `config`, `model/`, `trainer/` ...) to the search
path and registers AutoSCOPE's resolvers, so `dvc exp run -S 'model=resnet18'` with DVC's Hydra
integration (`hydra.config_dir: recipes`) composes a workspace recipe exactly as `autoscope` does
(`autoscope.dvc_hydra` then hands DVC's `params.yaml` to the stages). The path is computed in the
process, never written anywhere.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from autoscope.config import CONF_DIR, register_resolvers

register_resolvers()


class AutoscopeConfSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="autoscope", path=f"file://{CONF_DIR}")
