"""AutoSCOPE's Hydra sweeper: a grid like Hydra's basic sweeper, or an Optuna study.

Selected in conf/config.yaml (`override hydra/sweeper: autoscope`). Without a search space
(`hpo=none`) every `-m` runs the grid of its comma lists through Hydra's BasicSweeper. With
`hpo=<space>` (`conf/hpo/*.yaml`, plus any comma list on the command line, searched as a
categorical) it runs an Optuna study over the current Optuna: it asks the study for trials, hands
them as override lists to whichever Hydra launcher is chosen (basic, joblib, submitit), and tells
the study each job's result. A job attaches to its trial through `hpo.trial=<N>` and the shared RDB
storage (`autoscope.hpo.trial`), so pruning works across processes and machines. The study lives
in RDB storage: a killed sweep resumes where it stopped; a failing trial is recorded with its
reason and the study goes on.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf

from autoscope.config import project_spec, stores_spec
from autoscope.errors import UserError
from autoscope.hpo.budget import Budget
from autoscope.hpo.explore import explore
from autoscope.hpo.finish import finish_study, retrain
from autoscope.hpo.space import (
    ParamSpec,
    check_space,
    contains,
    flatten,
    parse_space,
    to_overrides,
)
from autoscope.hpo.study import (
    StudySpec,
    budget,
    counts,
    direction_of,
    masked,
    open_study,
    recover,
    stored_trials,
)
from autoscope.hpo.trials import TrialBatches
from autoscope.hpo.trials import log as _log

_ABSENT = object()


def study_spec(cfg: Any) -> StudySpec:
    """The study of a composed config (`hpo.*`, `paths.optuna_storage`, `metric_mode`, `seed`)."""
    hpo = cfg.hpo
    return StudySpec(
        name=str(hpo.study_name),
        storage=str(hpo.get("storage") or cfg.paths.optuna_storage),
        direction=direction_of(str(cfg.metric_mode)),
        seed=int(cfg.seed),
        heartbeat_s=int(hpo.heartbeat_s) if hpo.get("heartbeat_s") else None,
    )


# stages whose `-m` is a grid even when the recipe names an hpo space (they report no metric)
UNTUNED = ("project_create", "slides_ingest", "dataset_build", "archive", "package", "infer")


class AutoscopeSweeper(Sweeper):
    """The sweeper of `conf/hydra/sweeper/autoscope.yaml`."""

    def __init__(self, max_batch_size: int | None = None) -> None:
        super().__init__()
        self.max_batch_size = max_batch_size
        self.hydra_context: Any = None
        self.task_function: Any = None
        self.config: DictConfig | None = None
        self.launcher: Any = None
        self.job_idx = 0

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        self.hydra_context, self.task_function, self.config = hydra_context, task_function, config
        blocks = getattr(task_function, "dvc_blocks", None)  # DVC's Hydra mode: `-S hpo.x=..`
        if blocks:
            from autoscope.config import apply_blocks

            apply_blocks(config, blocks, list(config.hydra.overrides.task))
        self.started = time.monotonic()  # a budget counts from here (set-up included)
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # -- dispatch ---------------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None
        from omegaconf import OmegaConf

        hpo = self.config.get("hpo")
        stage = str(OmegaConf.select(self.config, "hydra.job.name", default=""))
        if not hpo or not hpo.get("params") or stage in UNTUNED:
            return self._grid(arguments)  # a recipe's hpo tunes training, never `infer -m` shards
        return self._study(arguments)

    def _grid(self, arguments: list[str]) -> Any:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        basic = BasicSweeper(max_batch_size=self.max_batch_size)
        basic.hydra_context, basic.config, basic.launcher = (
            self.hydra_context,
            self.config,
            self.launcher,
        )
        return basic.sweep(arguments)

    # -- helpers ----------------------------------------------------------------------------
    def _launch(self, jobs: list[list[str]]) -> list[Any]:
        """Run override lists through the chosen launcher; job numbers keep counting up."""
        returns = self.launcher.launch(jobs, initial_job_idx=self.job_idx) if jobs else []
        self.job_idx += len(jobs)
        return list(returns)

    def _choices(self) -> dict[str, Any]:
        assert self.config is not None
        return dict(self.config.hydra.runtime.choices)

    def _compose(self, overrides: list[str]) -> DictConfig:
        """The job config these overrides would give (what the launcher will compose)."""
        assert self.config is not None
        return self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))

    def _parallelism(self) -> int:
        assert self.config is not None
        launcher = self.config.hydra.launcher
        for key in ("n_jobs", "array_parallelism"):
            n = launcher.get(key)
            if isinstance(n, int) and n > 0:
                return n
        return 1

    def _split_arguments(self, arguments: list[str]) -> tuple[list[str], list[ParamSpec]]:
        """Command-line overrides: plain ones go to every job, sweeps become categoricals."""
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        plain, specs = [], []
        for o in parser.parse_overrides(arguments):
            if not o.is_sweep_override():
                plain.append(o.input_line)
            elif o.is_discrete_sweep():
                values = [v for v in o.sweep_iterator()]
                specs.append(ParamSpec(o.get_key_element(), "categorical", choices=tuple(values)))
            else:  # interval(a, b)
                sweep = o.value()
                specs.append(
                    ParamSpec(o.get_key_element(), "float", low=sweep.start, high=sweep.end)
                )
        return plain, specs

    def _check_space(self, specs: list[ParamSpec], plain: list[str]) -> dict[str, list]:
        """`space.check_space` over this sweep's composed configs."""
        return check_space(specs, plain, self._choices(), self._compose, _select, _ABSENT)

    def _fixed(self, hpo: Any) -> list[str]:
        """`hpo.fixed` as overrides every trial gets (each key must exist)."""
        assert self.config is not None
        raw = OmegaConf.to_container(hpo.fixed, resolve=True) if hpo.get("fixed") else {}
        fixed = flatten(raw)
        for k in fixed:
            if _select(self.config, k) is _ABSENT:
                raise UserError(f"hpo.fixed['{k}']: no such key in the composed config (a typo?)")
        return to_overrides(fixed)

    def _base_params(self, specs: list[ParamSpec], nodes: dict[str, list]) -> dict[str, Any]:
        """The recipe's own values of the searched keys that lie inside the space."""
        assert self.config is not None
        choices = self._choices()
        out: dict[str, Any] = {}
        for s in specs:
            if s.key in nodes:
                if choices.get(s.key) in s.choices:
                    out[s.key] = choices[s.key]
                continue
            v = _select(self.config, s.key)
            if v is not _ABSENT and contains(s, v):
                out[s.key] = float(v) if s.type == "float" else v
        return out

    # -- the study --------------------------------------------------------------------------
    def _study(self, arguments: list[str]) -> Any:
        import optuna
        from hydra.utils import instantiate

        assert self.config is not None
        cfg, hpo = self.config, self.config.hpo
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own line per trial instead
        plain, cli_specs = self._split_arguments(arguments)
        raw = OmegaConf.to_container(hpo.params, resolve=True)
        specs = parse_space(raw) + [s for s in cli_specs if s.key not in raw]
        nodes = self._check_space(specs, plain)
        groups = set(nodes)
        fixed = self._fixed(hpo)
        bud = Budget.from_hpo(hpo)
        if bud is not None:
            bud.start = getattr(self, "started", bud.start)
        n_trials, timeout = budget(
            hpo.get("n_trials"), hpo.get("timeout_s"), budgeted=bud is not None
        )
        spec = study_spec(cfg)
        try:
            seed = spec.seed + stored_trials(spec)
            sampler = instantiate(hpo.sampler, seed=seed) if hpo.get("sampler") else None
            pruner = instantiate(hpo.pruner) if hpo.get("pruner") else None
        except Exception as e:
            if isinstance(e, UserError):
                raise
            raise UserError(f"hpo.sampler/pruner: cannot build ({e})") from None
        study = open_study(spec, sampler, pruner)
        name = study.study_name
        if bud is not None:
            bud.spent_s = float(study.user_attrs.get("budget_spent_s", 0.0))
        sweep_dir = Path(cfg.paths.outputs) / "hpo" / name
        for line in recover(study):
            _log(name, line)
        if hpo.get("start_from_base") and not study.get_trials(deepcopy=False):
            base = self._base_params(specs, nodes)
            if base:
                study.enqueue_trial(base, user_attrs={"base": True})
                _log(
                    name,
                    f"trial #0 runs the recipe's values: {' '.join(to_overrides(base, groups))}",
                )
        recipe = str(cfg.hydra.job.config_name)
        tracker = None
        if hpo.get("mlflow", True):
            from autoscope.hpo.tracking import StudyRun

            tracker = StudyRun.owned(
                project_spec(cfg), stores_spec(cfg), study, storage=spec.storage,
                metric=str(cfg.metric), recipe=recipe, echo=lambda line: _log(name, line),
            )  # fmt: skip
        c = counts(study)
        width = self._parallelism()
        _log(
            name,
            f"{c.counted} trial(s) done of {f'{n_trials} trials' if n_trials else 'no trial limit'}"
            + (f", {timeout:.0f}s budget" if timeout else "")
            + f"; {width} at a time through the {_launcher_name(cfg)} launcher"
            + f"; storage {masked(spec.storage)}; outputs {sweep_dir}",
        )
        if bud is not None:
            _log(
                name, bud.describe() + (f"; {bud.spent_s:.0f}s spent before" if bud.spent_s else "")
            )
        run = TrialBatches(
            study, specs, nodes, plain + fixed, sweep_dir, tracker, str(cfg.metric),
            launch=self._launch, has_key=lambda node, key: _select(node, key) is not _ABSENT,
        )  # fmt: skip
        try:
            explore(
                study, run, n_trials=n_trials, timeout=timeout, width=width, bud=bud,
                heartbeat=bool(spec.heartbeat_s), sweep_dir=sweep_dir,
            )  # fmt: skip
        except KeyboardInterrupt:
            run.interrupted()
            if tracker is not None:
                tracker.client.set_terminated(tracker.run_id, "KILLED")
            _log(name, "interrupted: run the same command again to resume")
            raise
        except UserError:
            if tracker is not None:
                tracker.client.set_terminated(tracker.run_id, "FAILED")
            raise
        final = None
        if bud is not None and bud.retrain and counts(study).complete:
            raw = (hpo.get("retrain") or {}).get("overrides") or {}
            extra = flatten(OmegaConf.to_container(raw, resolve=True))
            final = retrain(
                study, bud, plain, groups, extra, launch=self._launch, metric=str(cfg.metric)
            )
        accounting = None
        if bud is not None:
            accounting = bud.accounting()
            study.set_user_attr("budget_spent_s", round(bud.elapsed(), 1))
        return finish_study(
            study, sweep_dir, tracker, metric=str(cfg.metric), groups=groups, fixed=fixed,
            recipe=recipe, final=final, budget=accounting,
        )  # fmt: skip


def _launcher_name(cfg: Any) -> str:
    target = str(cfg.hydra.launcher.get("_target_", ""))
    return target.rsplit(".", 1)[-1].removesuffix("Launcher").lower() or "basic"


def _select(cfg: Any, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
