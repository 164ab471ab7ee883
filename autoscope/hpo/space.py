"""The search space of `cfg.hpo.params`: parse, validate and sample it with an Optuna trial.

A space maps a config key (a Hydra override path such as `model.optimizer.lr`, or a config group
such as `model`) to a distribution::

    params:
      model: {type: categorical, choices: [small_cnn, resnet18]}
      model.optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      trainer.batch_size: {type: categorical, choices: [64, 128]}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autoscope.errors import UserError

TYPES = ("float", "int", "categorical")
_ALLOWED = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}
_SCALARS = (type(None), bool, int, float, str)


@dataclass(frozen=True)
class ParamSpec:
    """One searched config key and its distribution.

    Attributes:
        key: the config key (dotted path) or config group name; also the Optuna param name.
        type: `float`, `int` or `categorical`.
        low: lower bound (float/int).
        high: upper bound, inclusive (float/int).
        log: sample on a log scale (float/int).
        step: discretisation step (float/int), None for continuous floats.
        choices: the values of a categorical.
    """

    key: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()


def _fail(key: str, what: str) -> UserError:
    return UserError(f"hpo.params['{key}']: {what} (check the hpo space YAML in conf/hpo/)")


def parse_param(key: str, raw: Any) -> ParamSpec:
    """Validate one `params` entry and turn it into a ParamSpec.

    Raises:
        UserError: unknown type or field, missing/invalid bounds, empty or non-scalar choices.
    """
    if not isinstance(raw, dict):
        raise _fail(key, "needs a mapping like {type: float, low: 0.001, high: 0.1}")
    kind = raw.get("type")
    if kind not in TYPES:
        raise _fail(key, f"type '{kind}' is not one of {', '.join(TYPES)}")
    extra = set(raw) - _ALLOWED[kind]
    if extra:
        raise _fail(key, f"unknown field(s) {sorted(extra)} for type {kind}")
    if kind == "categorical":
        choices = raw.get("choices")
        if not isinstance(choices, list) or not choices:
            raise _fail(key, "categorical needs a non-empty list `choices`")
        if not all(isinstance(c, _SCALARS) for c in choices):
            raise _fail(key, "choices must be scalars (str, int, float, bool, null)")
        return ParamSpec(key, kind, choices=tuple(choices))
    low, high, step, log = raw.get("low"), raw.get("high"), raw.get("step"), raw.get("log", False)
    number = int if kind == "int" else (int, float)
    for name, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, number):
            want = "an int" if kind == "int" else "a number"
            raise _fail(key, f"`{name}` must be {want}, got {v!r}")
    if not low < high:
        raise _fail(key, f"needs low < high, got low={low} high={high}")
    if log and low <= 0:
        raise _fail(key, f"log scale needs low > 0, got {low}")
    if step is not None and (log or step <= 0):
        raise _fail(key, "`step` must be > 0 and cannot be combined with log: true")
    return ParamSpec(key, kind, low=low, high=high, log=bool(log), step=step)


def parse_space(params: Any) -> list[ParamSpec]:
    """Parse `hpo.params` (a plain mapping, file order kept) into specs.

    Raises:
        UserError: an empty space or any invalid entry.
    """
    if not isinstance(params, dict) or not params:
        raise UserError("hpo.params is empty: the hpo space YAML must list a key to search")
    return [parse_param(str(k), v) for k, v in params.items()]


def format_value(v: Any) -> str:
    """A value in Hydra's override grammar (`null`, `true`, quoted strings where needed)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, str) and not all(ch.isalnum() or ch in "_-./" for ch in v):
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return repr(v) if isinstance(v, float) else str(v)


def to_overrides(
    params: dict[str, Any], groups: set[str] | frozenset[str] = frozenset()
) -> list[str]:
    """Hydra command-line overrides equivalent to `params` (config groups first)."""
    first = [k for k in params if k in groups]
    rest = [k for k in params if k not in groups]
    return [f"{k}={format_value(params[k])}" for k in first + rest]


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of a nested mapping as {dotted path: value} (lists are leaves)."""
    if not isinstance(node, dict):
        return {prefix: node} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in node.items():
        path = f"{prefix}.{k}" if prefix else str(k)
        out.update(flatten(v, path) if isinstance(v, dict) else {path: v})
    return out


def suggest(trial: Any, spec: ParamSpec) -> Any:
    """Sample one value of `spec` with an Optuna trial (param name = the config key)."""
    if spec.type == "categorical":
        return trial.suggest_categorical(spec.key, list(spec.choices))
    if spec.type == "int":
        return trial.suggest_int(spec.key, spec.low, spec.high, step=spec.step or 1, log=spec.log)
    return trial.suggest_float(spec.key, spec.low, spec.high, step=spec.step, log=spec.log)


def contains(spec: ParamSpec, value: Any) -> bool:
    """True when `value` is a valid sample of `spec` (a choice, or a number within the bounds)."""
    if spec.type == "categorical":
        return any(value == c and type(value) is type(c) for c in spec.choices)
    if isinstance(value, bool) or not isinstance(
        value, int if spec.type == "int" else (int, float)
    ):
        return False
    return spec.low <= value <= spec.high


def check_space(
    specs: list[ParamSpec], plain: list[str], groups: dict[str, Any],
    compose: Callable[[list[str]], Any], select: Callable[[Any, str], Any], absent: object,
) -> dict[str, list]:  # fmt: skip
    """Fail before any trial when a searched key or group choice does not exist.

    Args:
        specs: the searched keys.
        plain: the overrides every trial gets.
        groups: the config groups and their chosen option (Hydra's choices).
        compose: overrides -> the composed config.
        select: (config, dotted key) -> its value, or `absent`.
        absent: what `select` returns for a missing key.

    Returns:
        {group: [config of each choice]} for the searched groups.
    """
    nodes: dict[str, list] = {}
    for s in specs:
        if s.key not in groups:
            continue
        if s.type != "categorical":
            raise UserError(
                f"hpo.params['{s.key}']: '{s.key}' is a config group: use type: categorical "
                "with choices naming its YAML files"
            )
        for c in s.choices:
            try:
                nodes.setdefault(s.key, []).append(compose([*plain, f"{s.key}={c}"]))
            except Exception as e:  # MissingConfigException & co: Hydra's own first line
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise UserError(f"hpo.params['{s.key}']: choice '{c}': {first}") from None
    base = compose(plain)
    for s in specs:
        if s.key in nodes:
            continue
        top = s.key.split(".")[0]
        candidates = nodes.get(top, [base])
        hits = [n for n in candidates if select(n, s.key) is not absent]
        if not hits:
            where = f"any choice of group '{top}'" if top in nodes else "the composed config"
            raise UserError(
                f"hpo.params['{s.key}']: no such key in {where} "
                f"(a typo? see conf/{top}/ and the hpo space YAML)"
            )
        if any(_is_section(select(n, s.key)) for n in hits):
            raise UserError(
                f"hpo.params['{s.key}']: '{s.key}' is a section, not a value: search its keys"
            )
    return nodes


def _is_section(value: Any) -> bool:
    """A config node with keys (a section), not a value."""
    return hasattr(value, "keys") and not isinstance(value, str)
