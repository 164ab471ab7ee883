"""The BentoML model store, kept in the workspace (`paths.bentoml_home`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from autoscope.archive.card import CARD, read_card
from autoscope.errors import UserError


def use_bentoml_home(home: str | Path) -> None:
    """Point BentoML's stores at `home` (set before use; switches homes within one process too).

    BentoML reads `BENTOML_HOME` once and caches its stores, so an already imported BentoML is
    re-pointed through its dependency container as well.
    """
    home = Path(home)
    for sub in ("bentos", "models", "envs", "tmp"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    os.environ["BENTOML_HOME"] = str(home)
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")  # offline: no usage analytics
    from bentoml._internal.bento import BentoStore
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    BentoMLContainer.bentoml_home.set(str(home))
    BentoMLContainer.model_store.set(ModelStore(str(home / "models")))
    BentoMLContainer.bento_store.set(BentoStore(str(home / "bentos")))
    BentoMLContainer.tmp_bento_store.set(BentoStore(str(home / "tmp")))


def has_model(tag: str) -> bool:
    """Whether the model store holds `tag` (`name:version`)."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bentoml.models.get(tag)
    except NotFound:
        return False
    return True


def save_model(name: str, version: str, src_dir: Path, labels: dict, metadata: dict) -> str:
    """Copy the files of `src_dir` (state dict + card, no pickles) into a new store model.

    Returns:
        The BentoML tag `name:version` (existing models are kept, not overwritten).

    Raises:
        UserError: the store already holds this tag from a different run.
    """
    import bentoml

    tag = f"{name}:{version}"
    if has_model(tag):
        mine, theirs = src_dir / CARD, model_dir(tag) / CARD
        if mine.is_file() and theirs.is_file():
            if read_card(mine).run_id != read_card(theirs).run_id:
                raise UserError(
                    f"BentoML store {tag} holds another run than the MLflow registry says: "
                    "the stores disagree (delete the store model or the registry version)"
                )
        return tag
    with bentoml.models.create(tag, labels=labels, metadata=metadata) as model:
        for p in sorted(src_dir.rglob("*")):
            if p.is_file():
                dst = Path(model.path) / p.relative_to(src_dir)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(p, dst)
    return tag


def model_dir(tag: str) -> Path:
    """Folder of a store model (holds `metadata.json`, `spec.json`, `model.pt`)."""
    import bentoml

    return Path(bentoml.models.get(tag).path)


def list_models(prefix: str) -> list[Any]:
    """Store models whose name starts with `prefix`."""
    import bentoml

    return [m for m in bentoml.models.list() if m.tag.name.startswith(prefix)]
