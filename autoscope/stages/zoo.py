"""`autoscope zoo list`: pretrained weights available to the project (zoo cards + archived)."""

from __future__ import annotations

from typing import Any


def list_view(cfg: Any, flags: list[str]) -> None:
    """Print the zoo folder's cards and the project's archived models (usable as `zoo:<name>`)."""
    from autoscope.archive.tables import text_table
    from autoscope.config import stores_spec
    from autoscope.models.zoo import archived_entries, zoo_entries
    from autoscope.stages.runs import _parse

    _parse("autoscope zoo list", flags, lambda p: None)
    stores = stores_spec(cfg)
    entries = zoo_entries(stores.zoo) + archived_entries(stores.outputs)
    if not entries:
        print(f"zoo is empty: drop <name>.pt + <name>.yaml into {stores.zoo}, or archive a run")
        return
    cols = ["name", "kind", "arch", "source", "mpp", "weights"]
    rows = []
    for e in entries:
        weights = e["weights"] if e["exists"] else f"MISSING {e['weights']}"
        rows.append([str(e[c]) if c != "weights" else weights for c in cols])
    print(text_table(cols, rows))
    print("use with: model.pretrained=zoo:<name>")
