"""`autoscope zoo list`: pretrained weights available to the project (zoo cards + archived)."""

from __future__ import annotations

from typing import Any


def list_view(cfg: Any, flags: list[str]) -> None:
    """Print the zoo folder's cards and the project's archived models (usable as `zoo:<name>`)."""
    from autoscope.models.zoo import archived_entries, zoo_entries
    from autoscope.stages.runs import _parse, text_table

    _parse("autoscope zoo list", flags, lambda p: None)
    entries = zoo_entries(cfg.paths.zoo) + archived_entries(cfg.paths.outputs)
    if not entries:
        print(f"zoo is empty: drop <name>.pt + <name>.yaml into {cfg.paths.zoo}, or archive a run")
        return
    cols = ["name", "kind", "arch", "source", "mpp", "weights"]
    rows = []
    for e in entries:
        weights = e["weights"] if e["exists"] else f"MISSING {e['weights']}"
        rows.append([str(e[c]) if c != "weights" else weights for c in cols])
    print(text_table(cols, rows))
    print("use with: model.pretrained=zoo:<name>")
