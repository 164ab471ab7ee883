"""The persistent Optuna study: storage, sampler, pruner, trial accounting and resuming.

Counting rule: a trial counts toward `n_trials` once it is COMPLETE, PRUNED, or FAILed by its own
error (user attr `fail_reason`). A trial cut short by an interruption (Ctrl-C, a killed worker, a
stale heartbeat) is FAILed without a reason, does not count, and its parameters are queued once
more, so a resumed sweep ends with exactly `n_trials` counted trials.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoscope.errors import UserError

WORKER = f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Counts:
    """Trial accounting of a study (see the module docstring for what counts)."""

    complete: int = 0
    pruned: int = 0
    failed: int = 0
    interrupted: int = 0
    running: int = 0

    @property
    def counted(self) -> int:
        """Trials that count toward `n_trials`."""
        return self.complete + self.pruned + self.failed


@dataclass(frozen=True)
class StudySpec:
    """Which study, where, and which way is better (built by the sweeper from `cfg.hpo`).

    Attributes:
        name: the study name in the storage (the same name resumes it).
        storage: an RDB URL (SQLite by default, PostgreSQL to share workers across machines).
        direction: `maximize` or `minimize`.
        seed: the base seed; the sampler gets `seed + trials already stored`.
        heartbeat_s: worker heartbeat for multi-machine studies (None: same-host pid check only).
    """

    name: str
    storage: str
    direction: str = "maximize"
    seed: int = 0
    heartbeat_s: int | None = None


def direction_of(mode: str) -> str:
    """`max`/`min` (the config's `metric_mode`) as Optuna's direction."""
    if mode not in ("max", "min"):
        raise UserError(f"metric_mode '{mode}' must be max or min (conf/config.yaml or the recipe)")
    return "maximize" if mode == "max" else "minimize"


def masked(url: str) -> str:
    """The URL without its password, for logs and tags."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        if ":" not in cred:  # no password to hide
            return url
        return f"{scheme}://{cred.split(':')[0]}:***@{host}"
    return url


def stored_trials(spec: StudySpec) -> int:
    """How many trials the stored study already holds (0 when it does not exist yet)."""
    import optuna

    storage = open_storage(spec)
    known = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
    return known[spec.name].n_trials if spec.name in known else 0


def open_storage(spec: StudySpec) -> Any:
    """The RDB storage of `spec` (tables created on first use; retried on creation races)."""
    import optuna

    url = spec.storage
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}  # workers share one file
    if spec.heartbeat_s:
        from optuna.storages import RetryFailedTrialCallback

        kwargs.update(
            heartbeat_interval=int(spec.heartbeat_s),
            grace_period=3 * int(spec.heartbeat_s),
            failed_trial_callback=RetryFailedTrialCallback(max_retry=1),
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _rdb_storage(url, kwargs)


def open_study(spec: StudySpec, sampler: Any = None, pruner: Any = None) -> Any:
    """Create or load (resume) the study `spec.name` in its RDB storage.

    Args:
        spec: the study.
        sampler: an Optuna sampler (seed it with `spec.seed + stored_trials(spec)` so a resumed
            sweep is reproducible but does not repeat its first random samples).
        pruner: an Optuna pruner (None: never prune).

    Raises:
        UserError: a storage that cannot be opened, or a stored study with another direction.
    """
    import optuna

    storage = open_storage(spec)
    known = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
    if spec.name in known and known[spec.name].direction.name.lower() != spec.direction:
        raise UserError(
            f"hpo.study_name '{spec.name}': the stored study "
            f"{known[spec.name].direction.name.lower()}s but this sweep would {spec.direction}; "
            "pick another study_name"
        )
    return optuna.create_study(
        storage=storage,
        sampler=sampler,
        pruner=pruner or optuna.pruners.NopPruner(),
        study_name=spec.name,
        direction=spec.direction,
        load_if_exists=True,
    )


_RACES = ("IntegrityError", "already exists", "database is locked")  # tables made by another worker


def _rdb_storage(url: str, kwargs: dict[str, Any], tries: int = 5) -> Any:
    """Open the RDB storage; retried, since workers started together race to create its tables."""
    import optuna

    for attempt in range(tries):
        try:
            return optuna.storages.RDBStorage(url, **kwargs)
        except Exception as e:  # a driver missing, a server down, a bad URL, a creation race
            if attempt + 1 < tries and any(r in repr(e) + str(e) for r in _RACES):
                time.sleep(0.5 + attempt)
                continue
            why = str(e).splitlines()[0].replace(url, masked(url)) if str(e) else type(e).__name__
            raise UserError(f"hpo.storage '{masked(url)}': cannot open ({why})") from None
    raise AssertionError("unreachable")


def _pid_gone(worker: str) -> bool:
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def counts(study: Any) -> Counts:
    """Count the study's trials by the rule of this module."""
    from optuna.trial import TrialState

    c = Counts()
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.COMPLETE:
            c.complete += 1
        elif t.state == TrialState.PRUNED:
            c.pruned += 1
        elif t.state == TrialState.FAIL:
            if "fail_reason" in t.user_attrs:
                c.failed += 1
            else:
                c.interrupted += 1
        elif t.state == TrialState.RUNNING:
            c.running += 1
    return c


def recover(study: Any) -> list[str]:
    """Fail RUNNING trials whose worker process on this host is gone; queue interrupted ones again.

    Each interrupted trial is retried once (a retry that is interrupted again is not queued, so a
    trial that kills its worker cannot loop). Returns one line per action, for the log.
    """
    from optuna.trial import TrialState

    lines = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if _pid_gone(str(t.user_attrs.get("worker", ""))):
            study.tell(t.number, state=TrialState.FAIL)
            lines.append(f"trial #{t.number}: its worker {t.user_attrs['worker']} is gone -> FAIL")
    done = set(study.user_attrs.get("requeued", []))
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        if "fail_reason" in t.user_attrs or t.number in done:
            continue
        done.add(t.number)
        if "retry_of" not in t.user_attrs and t.params:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
            lines.append(f"trial #{t.number} was interrupted: its parameters are queued again")
    study.set_user_attr("requeued", sorted(done))
    return lines


def budget(
    n_trials: Any, timeout_s: Any, budgeted: bool = False
) -> tuple[int | None, float | None]:
    """`hpo.n_trials` and `hpo.timeout_s` checked: one of them (or a budget) set, n_trials >= 1."""
    if n_trials is None and timeout_s is None and not budgeted:
        raise UserError(
            "hpo: set budget_minutes, n_trials or timeout_s (all null would run forever)"
        )
    if n_trials is not None and int(n_trials) < 1:
        raise UserError(f"hpo.n_trials must be >= 1, got {n_trials}")
    return (None if n_trials is None else int(n_trials)), (
        None if timeout_s is None else float(timeout_s)
    )
