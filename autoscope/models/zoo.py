"""The local model zoo: weights with a YAML card in the zoo folder (`paths.zoo`), plus archived.

A zoo entry is `<zoo>/<name>.yaml` (the card: `arch`, `source`, `input: {mpp, mean, std}`,
optional `weights` file name, default `<name>.pt`) beside its state dict. Archived models are
`outputs/<project>/models/<model>/v<N>/{model.pt, metadata.json}` and are named `<model>/v<N>`.
Nothing is ever downloaded: a missing entry is a UserError.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autoscope.errors import UserError


def _read_card(card: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(card.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{card}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{card}: a zoo card must be a mapping (arch, source, input, weights)")
    return data


def zoo_entries(zoo_dir: str | Path) -> list[dict[str, Any]]:
    """Cards of the zoo folder, each with `name`, `weights` (absolute path) and `exists`."""
    out = []
    for card in sorted(Path(zoo_dir).glob("*.yaml")):
        data = _read_card(card)
        weights = card.parent / str(data.get("weights") or f"{card.stem}.pt")
        inp = data.get("input") or {}
        out.append(
            {
                "name": card.stem,
                "kind": "zoo",
                "arch": data.get("arch"),
                "source": data.get("source"),
                "mpp": inp.get("mpp"),
                "mean": inp.get("mean"),
                "std": inp.get("std"),
                "weights": str(weights),
                "exists": weights.is_file(),
            }
        )
    return out


def archived_entries(outputs_dir: str | Path) -> list[dict[str, Any]]:
    """Models archived by earlier runs: `<outputs>/models/<model>/v<N>/` with a model card."""
    out = []
    for meta in sorted(Path(outputs_dir).glob("models/*/v*/metadata.json")):
        try:
            card = json.loads(meta.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        inp = card.get("input") or {}
        arch = card.get("arch")
        weights = meta.parent / "model.pt"
        out.append(
            {
                "name": f"{meta.parent.parent.name}/{meta.parent.name}",
                "kind": "archived",
                "arch": arch.get("name") if isinstance(arch, dict) else arch,
                "source": f"run {card.get('run_id', '?')}",
                "mpp": inp.get("mpp"),
                "mean": inp.get("mean"),
                "std": inp.get("std"),
                "weights": str(weights),
                "exists": weights.is_file(),
            }
        )
    return out


def resolve_pretrained(ref: str, zoo_dir: str | Path, outputs_dir: str | Path) -> Path:
    """The weights file for `zoo:<name>` (a zoo card or an archived `<model>/v<N>`) or a path.

    Raises:
        UserError: unknown zoo name or a missing file (one line naming `model.pretrained`).
    """
    if ref.startswith("zoo:"):
        name = ref[4:]
        entries = {e["name"]: e for e in zoo_entries(zoo_dir) + archived_entries(outputs_dir)}
        if name not in entries:
            known = ", ".join(sorted(entries)) or "none: the zoo is empty"
            raise UserError(
                f"model.pretrained: no zoo entry '{name}' in {zoo_dir} (known: {known})"
            )
        path = Path(entries[name]["weights"])
    else:
        path = Path(ref).expanduser()
    if not path.is_file():
        raise UserError(f"model.pretrained: weights file not found: {path}")
    return path


def load_pretrained(net: Any, path: Path) -> dict[str, int]:
    """Load a state dict (weights_only) into `net`, skipping keys whose shape differs (the head).

    Accepts the backbone's own keys or a PatchClassifier state dict (`net.` prefix).

    Returns:
        counts of `loaded` and `skipped` tensors.

    Raises:
        UserError: the file is not a state dict or nothing in it fits the architecture.
    """
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"model.pretrained: {path} is no weights-only state dict ({e})") from None
    if not isinstance(state, dict):
        raise UserError(f"model.pretrained: {path} holds no state dict")
    if any(k.startswith("net.") for k in state):
        state = {k[4:]: v for k, v in state.items() if k.startswith("net.")}
    own = net.state_dict()
    fit = {k: v for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    if not fit:
        raise UserError(f"model.pretrained: no tensor of {path} fits {type(net).__name__}")
    net.load_state_dict(fit, strict=False)
    return {"loaded": len(fit), "skipped": len(own) - len(fit)}
