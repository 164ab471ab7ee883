"""Per-patch feature vectors: colour/texture statistics (no model) or a model's embeddings.

Both feed the linear heads of refinement and the diversity terms of selection. Colour/texture
features need no model, so they also serve the cold start.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FEATURE_PX = 32  # colour/texture features are computed on patches shrunk to this side


def _shrink(images: np.ndarray, side_px: int) -> np.ndarray:
    """Block-average uint8 [N,H,W,3] patches to about side_px (float32 in [0, 1])."""
    n, h, w, _ = images.shape
    f = max(1, min(h, w) // side_px)
    hh, ww = (h // f) * f, (w // f) * f
    x = images[:, :hh, :ww].astype(np.float32) / 255.0
    return x.reshape(n, hh // f, f, ww // f, f, 3).mean(axis=(2, 4))


def colour_texture(images: np.ndarray, batch: int = 512) -> np.ndarray:
    """Colour and texture statistics of uint8 [N,H,W,3] patches: float32 [N, 46].

    Per channel mean, std and an 8-bin histogram; optical-density (haematoxylin-like) mean and
    std; grey gradient magnitude mean/std and quartiles; the Laplacian's energy at two scales.
    """
    out = []
    for s in range(0, len(images), batch):
        x = _shrink(np.asarray(images[s : s + batch]), FEATURE_PX)
        n = len(x)
        flat = x.reshape(n, -1, 3)
        hist = [
            np.stack([np.histogram(c, bins=8, range=(0, 1))[0] for c in flat[:, :, k]])
            / flat.shape[1]
            for k in range(3)
        ]
        od = -np.log(np.clip(flat, 1 / 255, 1))
        grey = x.mean(axis=3)
        gy, gx = np.gradient(grey, axis=(1, 2))
        mag = np.sqrt(gx**2 + gy**2).reshape(n, -1)
        lap = grey[:, 1:-1, 1:-1] * 4 - (
            grey[:, :-2, 1:-1] + grey[:, 2:, 1:-1] + grey[:, 1:-1, :-2] + grey[:, 1:-1, 2:]
        )
        coarse = grey[:, ::2, ::2]
        lap2 = coarse[:, 1:-1, 1:-1] * 4 - (
            coarse[:, :-2, 1:-1] + coarse[:, 2:, 1:-1] + coarse[:, 1:-1, :-2] + coarse[:, 1:-1, 2:]
        )
        parts = [
            flat.mean(1),
            flat.std(1),
            *hist,
            od.mean(1),
            od.std(1),
            mag.mean(1, keepdims=True),
            mag.std(1, keepdims=True),
            np.percentile(mag, [25, 50, 75], axis=1).T,
            (lap**2).reshape(n, -1).mean(1, keepdims=True),
            (lap2**2).reshape(n, -1).mean(1, keepdims=True),
        ]
        out.append(np.concatenate(parts, axis=1).astype(np.float32))
    return np.concatenate(out) if out else np.zeros((0, 46), np.float32)


def model_outputs(
    model: Any, images: np.ndarray, batch: int = 256, tta: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (the head's input) and softmax probabilities of a `PatchClassifier`.

    Args:
        model: an archived `PatchClassifier` (`autoscope.infer.models.load_model`).
        images: uint8 [N,H,W,3] patches at the model's input size.
        batch: patches per forward pass.
        tta: average the probabilities over the 8 flip/rot90 views.

    Returns:
        (embeddings float32 [N, D], probabilities float32 [N, C]).
    """
    import torch

    from autoscope.models.classifier import head_name

    head = dict(model.net.named_modules())[head_name(model.net)]
    seen: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, inp, _o: seen.append(inp[0].detach().flatten(1)))
    embs, probs = [], []
    model.eval()
    try:
        with torch.no_grad():
            for s in range(0, len(images), batch):
                x = torch.from_numpy(np.ascontiguousarray(images[s : s + batch]))
                seen.clear()
                logits = model(x)
                embs.append(seen[0].float().numpy())
                p = model.predict_tta(x) if tta else torch.softmax(logits.float(), dim=1)
                probs.append(p.numpy())
    finally:
        hook.remove()
    return np.concatenate(embs).astype(np.float32), np.concatenate(probs).astype(np.float32)


def mc_dropout_probs(model: Any, images: np.ndarray, passes: int, batch: int = 256) -> np.ndarray:
    """Softmax probabilities of `passes` stochastic forward passes (dropout on): [T, N, C].

    Only the dropout layers run in training mode (batch norm keeps its running statistics),
    with a fixed torch seed, so a selection is repeatable.

    Raises:
        UserError: the model has no dropout layer with p > 0 (nothing would vary).
    """
    import torch

    from autoscope.errors import UserError

    drops = [m for m in model.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    if not any(m.p > 0 for m in drops):
        raise UserError("select.mc_dropout: the model has no dropout layer with p > 0")
    model.eval()
    runs = []
    with torch.random.fork_rng(), torch.no_grad():  # the caller's torch RNG is left as it was
        torch.manual_seed(0)
        for m in drops:
            m.train()
        try:
            for _ in range(passes):
                probs = []
                for s in range(0, len(images), batch):
                    x = torch.from_numpy(np.ascontiguousarray(images[s : s + batch]))
                    probs.append(torch.softmax(model(x).float(), dim=1).numpy())
                runs.append(np.concatenate(probs))
        finally:
            model.eval()
    return np.stack(runs).astype(np.float32)
