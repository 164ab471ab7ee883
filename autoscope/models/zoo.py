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
                "card": str(card),
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
                "card": str(meta),
            }
        )
    return out


def pretrained_entry(ref: str, zoo_dir: str | Path, outputs_dir: str | Path) -> dict[str, Any]:
    """The entry of `zoo:<name>` (a zoo card or an archived `<model>/v<N>`) or of a file path.

    Raises:
        UserError: an unknown zoo name or a missing weights file: one line naming what is
            missing and where it was looked up (nothing is ever downloaded).
    """
    if not ref.startswith("zoo:"):
        path = Path(ref).expanduser()
        if not path.is_file():
            raise UserError(
                f"model.pretrained: weights file not found: {path} (a local state dict; "
                "nothing is downloaded)"
            )
        entry = dict.fromkeys(("arch", "source", "mpp", "mean", "std", "card"))
        return {**entry, "name": str(path), "kind": "file", "weights": str(path), "exists": True}
    name = ref[4:]
    models = Path(outputs_dir) / "models"
    entries = {e["name"]: e for e in zoo_entries(zoo_dir) + archived_entries(outputs_dir)}
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none: the zoo is empty"
        raise UserError(
            f"model.pretrained: no zoo entry '{name}' in paths.zoo ({zoo_dir}) or the archived "
            f"models ({models}) (known: {known}; see `autoscope zoo list`)"
        )
    entry = entries[name]
    if not entry["exists"]:
        raise UserError(
            f"model.pretrained: weights file not found: {entry['weights']} (of {ref}, card "
            f"{entry['card']}; nothing is downloaded: put the state dict there)"
        )
    return entry


def resolve_pretrained(ref: str, zoo_dir: str | Path, outputs_dir: str | Path) -> Path:
    """The weights file of `zoo:<name>` or a path (see `pretrained_entry`).

    Raises:
        UserError: unknown zoo name or a missing file (one line naming `model.pretrained`).
    """
    return Path(pretrained_entry(ref, zoo_dir, outputs_dir)["weights"])


def _misfit(net: Any, state: dict[str, Any], own: dict[str, Any], head: str) -> list[str]:
    """What keeps `state` from fitting the backbone of `net`: wrong shapes, missing tensors."""
    from autoscope.models.classifier import in_module

    out = []
    for k, v in own.items():
        if in_module(k, head):
            continue
        if k not in state:
            out.append(f"{k} is missing from the file")
        elif tuple(state[k].shape) != tuple(v.shape):
            have, want = list(state[k].shape), list(v.shape)
            out.append(f"{k} is {have} in the file but {want} in {type(net).__name__}")
    return out


def load_pretrained(net: Any, path: Path, ref: str | None = None) -> dict[str, Any]:
    """Load a state dict (weights_only) into `net`: the whole backbone, and the head if it fits.

    Accepts the backbone's own keys, a PatchClassifier state dict (`net.` prefix) or a training
    checkpoint (`state_dict` with `model.net.` keys). Tensors the net has no place for (e.g. a
    self-supervised projector) are ignored; a head of another class count keeps its fresh
    initialisation. The head is the net's last linear layer (`classifier.head_name`).

    Returns:
        `loaded` tensors, `skipped` (the net's tensors left at their fresh init: the head's, when
        it does not fit), `ignored` (the file's unused tensors), `head` (its module name),
        `head_reinit` (bool) and `file_classes` (outputs of the file's head, None if absent).

    Raises:
        UserError: the file is not a weights-only state dict, or a backbone tensor is missing
            from it or has another shape (one line naming the first and how many more).
    """
    import torch

    from autoscope.models.classifier import head_name, in_module

    what = ref or str(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(
            f"model.pretrained={what}: {path} is no weights-only state dict ({first})"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a Lightning checkpoint (keys `model.net.*`)
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise UserError(f"model.pretrained={what}: {path} holds no state dict of tensors")
    for prefix in ("model.net.", "net."):  # a LightningModule's or a PatchClassifier's keys
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            break
    own, head = net.state_dict(), head_name(net)
    misfit = _misfit(net, state, own, head)
    if misfit:
        more = f" (and {len(misfit) - 1} more)" if len(misfit) > 1 else ""
        raise UserError(
            f"model.pretrained={what}: {path} does not fit the model: {misfit[0]}{more}"
        )
    head_keys = [k for k in own if in_module(k, head)]
    head_fits = all(k in state and state[k].shape == own[k].shape for k in head_keys)
    fit = {k: v for k, v in state.items() if k in own and (head_fits or k not in head_keys)}
    net.load_state_dict(fit, strict=False)
    file_head = state.get(f"{head}.weight")
    return {
        "loaded": len(fit),
        "skipped": len(own) - len(fit),
        "ignored": len([k for k in state if k not in own]),
        "head": head,
        "head_reinit": not head_fits,
        "file_classes": int(file_head.shape[0]) if file_head is not None else None,
    }
