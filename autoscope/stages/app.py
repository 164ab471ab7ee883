"""Every action stage runs as a real Hydra application.

`autoscope <stage> [<verb>] <recipe> [hydra args]` becomes Hydra's own command line: the recipe is
the primary config (`config_path` = its folder: the workspace's `recipes/`, then the built-ins),
`conf/` is on the search path, and the stage is the task function. So everything a Hydra user
knows works: `-m` grids over any key or group, `glob()`, `hydra/launcher=joblib|submitit_local|
submitit_slurm`, `--cfg job|hydra|all`, `--resolve`, `--info`, `--help`, `--shell-completion`,
`~key`, and a `.hydra/` record (config, overrides, choices) in every job's run dir
(`outputs/<project>/<stage>/...`, see `hydra:` in conf/config.yaml).

Errors a user causes end with one message (Hydra's full text) and exit 2, never a traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from typing import Any

from autoscope.config import (
    CONF_DIR,
    check_value_types,
    error_message,
    recipe_path,
    register_resolvers,
)
from autoscope.config import searchpath_override as _searchpath
from autoscope.errors import UserError

register_resolvers()  # also in launcher workers, which import this module to unpickle the task


class StageFailed(BaseException):  # noqa: N818 - a BaseException so Hydra's run_job lets it pass
    """A user error in a single (non-multirun) job: one line, exit 2, no Hydra job banner."""


class StageTask:
    """The Hydra task function of one stage: `module:function` taking the composed config.

    A plain class (not a closure) so that the joblib and submitit launchers can pickle it.
    """

    def __init__(self, target: str, name: str, dvc_blocks: dict | None = None) -> None:
        self.target = target
        self.name = name
        self.dvc_blocks = dvc_blocks or {}  # blocks of DVC's Hydra-mode params.yaml (dvc_hydra)

    def __call__(self, cfg: Any) -> Any:
        import multiprocessing as mp

        register_resolvers()
        if mp.get_start_method(allow_none=True) == "loky":  # in a joblib launcher worker:
            mp.set_start_method(None, force=True)  # our own process pools need a stdlib method
        mod_name, fn_name = self.target.split(":")
        fn = getattr(importlib.import_module(mod_name), fn_name)
        if self.dvc_blocks:
            from hydra.core.hydra_config import HydraConfig

            from autoscope.config import apply_blocks

            apply_blocks(cfg, self.dvc_blocks, list(HydraConfig.get().overrides.task))
        t0 = time.perf_counter()
        try:
            result = fn(cfg)
        except UserError as e:
            from hydra.core.hydra_config import HydraConfig
            from hydra.types import RunMode

            if HydraConfig.get().mode == RunMode.RUN:
                raise StageFailed(str(e)) from None
            raise  # a sweep records it (Optuna) or names the failing job (grid)
        if isinstance(result, dict) and result:
            shown = ", ".join(
                f"{k}={v}" for k, v in result.items() if not isinstance(v, (dict, list))
            )
            print(f"{self.name} done in {time.perf_counter() - t0:.1f}s: {shown}", flush=True)
        return result


def _parser(prog: str) -> Any:
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()
    parser.prog = prog
    return parser


def run_app(name: str, target: str, recipe: str, args: list[str], prog: str) -> int:
    """Run stage `name` (`module:function`) as a Hydra app over `recipe` with Hydra `args`.

    Returns the exit status: 0, 2 for anything the user got wrong (one message on stderr), 130 on
    Ctrl-C.
    """
    from hydra._internal.utils import _run_hydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"  # the user asked for tracebacks
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises; we print one message below
    try:
        path = recipe_path(recipe)
        parser = _parser(prog)
        ns = parser.parse_args(args)
        user_overrides = list(ns.overrides)
        if not (ns.help or ns.hydra_help):
            check_value_types(path, user_overrides)
        extra = [f"hydra.job.name={name}"]
        if ns.config_dir is None:  # conf/ on the search path (help, --info and sweeps see it)
            ns.config_dir = str(CONF_DIR)
        else:  # the user's own --config-dir comes first, conf/ still after it
            extra.append(_searchpath())
        ns.overrides = [*user_overrides, *extra]
        blocks = {}
        if not (ns.help or ns.hydra_help or ns.cfg or ns.info):
            from autoscope.config import dvc_blocks

            blocks = dvc_blocks(path, user_overrides)
        _run_hydra(
            args=ns,
            args_parser=parser,
            task_function=StageTask(target, name, blocks),
            config_path=str(path.parent),
            config_name=path.stem,
        )
    except (UserError, StageFailed) as e:
        return _fail(str(e))
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        if full_error:
            raise
        return _fail(error_message(e))
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    finally:
        if not full_error:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        from hydra.core.global_hydra import GlobalHydra

        if "joblib" in sys.modules:  # the joblib launcher's worker pool ends with the app
            from joblib.externals.loky import get_reusable_executor

            get_reusable_executor().shutdown(wait=True)

        GlobalHydra.instance().clear()  # a next app in this process (tests, Studio) starts clean
    return 0


def _fail(msg: str, code: int = 2) -> int:
    print(f"autoscope: error: {msg}", file=sys.stderr, flush=True)
    return code
