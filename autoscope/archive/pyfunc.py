"""An archived model version as an MLflow model (pyfunc flavour, "models from code").

`mlflow.pyfunc.load_model("models:/<project>-<model_name>@champion")` loads the same classifier
as `autoscope infer` (`autoscope.infer.models.load_model`: the card, `spec.json` and the
`model.pt` state dict, read with `weights_only=True`). Its `predict`:

- input: uint8 RGB patches `[N, patch_px, patch_px, 3]` at the card's `mpp`, as a numpy array
  (the model's signature says so, and MLflow checks it before `predict`: `np.stack` a list of
  patches first; a served model takes them as nested lists, JSON `{"inputs": [...]}`);
- output: a pandas DataFrame of N rows, one float32 column per class (softmax probabilities, in
  the card's class order) and `label`, the most probable class's name.

The logged model holds the card, `spec.json` and `model.pt` as artefacts plus the script
`pyfunc_model.py`, which imports this module from the installed package: no pickled Python
objects, no copies of our code, no host paths. Importing this module imports MLflow: import it
where a model is logged or loaded, not at start-up.
"""

from __future__ import annotations

import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from autoscope.archive.card import CARD, ModelCard

SCRIPT = Path(__file__).with_name("pyfunc_model.py")  # the models-from-code script
LABEL = "label"  # output column of the predicted class name
BATCH = 256  # patches per model call
REQUIREMENTS = ("autoscope", "torch", "numpy", "pandas", "mlflow")  # pinned as installed


class PatchClassifierPyfunc(PythonModel):
    """The pyfunc wrapper around an archived `PatchClassifier` (see the module docstring)."""

    def load_context(self, context: Any) -> None:
        """Rebuild the classifier from the card, spec and weights artefacts."""
        from autoscope.infer.batching import pick_device, prepare_model
        from autoscope.infer.models import load_model

        model, self.card = load_model(artifact_folder(context.artifacts))
        self.device = pick_device("auto")
        self.model = prepare_model(model, self.device)

    def predict(
        self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Class probabilities and the predicted class of uint8 patches (see the module)."""
        arr = patches(model_input, self.card.input.patch_px)
        return predict_frame(self.model, self.card, arr, self.device)


def artifact_folder(artifacts: dict[str, str]) -> Path:
    """The folder holding the card and, beside it, the spec and weights it names.

    Raises:
        FileNotFoundError: the artefacts do not lie together.
    """
    folder = Path(artifacts["card"]).parent
    for name in ("spec", "weights"):
        if Path(artifacts[name]).parent != folder:
            raise FileNotFoundError(f"artefact {name} does not lie beside the card in {folder}")
    return folder


def patches(value: Any, patch_px: int) -> np.ndarray:
    """Check a batch of patches: uint8 (or 0-255 integers) `[N, patch_px, patch_px, 3]`.

    Raises:
        ValueError: not an array of that shape, or values outside 0-255.
    """
    from autoscope.infer.batching import uint8_patches

    if isinstance(value, pd.DataFrame):  # a single tensor input given as a frame of arrays
        value = [np.asarray(v) for v in value.iloc[:, 0]]
    if isinstance(value, np.ndarray | list) and np.ndim(value) == 3:  # one patch
        value = np.asarray(value)[None]
    return uint8_patches(value, patch_px)


def predict_frame(model: Any, card: ModelCard, arr: np.ndarray, device: Any) -> pd.DataFrame:
    """Softmax probabilities per class and the predicted `label`, by the inference engine's call."""
    from autoscope.infer.batching import run_model

    names = [c.name for c in card.classes]
    chunks = (arr[i : i + BATCH] for i in range(0, len(arr), BATCH))
    _, probs, _ = run_model(model, ((c, np.zeros((len(c), 2))) for c in chunks), device=device)
    probs = probs.reshape(len(arr), len(names)).astype(np.float32)
    frame = pd.DataFrame(probs, columns=names)
    frame[LABEL] = np.asarray(names, dtype=object)[probs.argmax(1)]
    return frame


def signature(card: ModelCard) -> Any:
    """uint8 `[-1, patch_px, patch_px, 3]` in; one float column per class and `label` out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    px = card.input.patch_px
    outputs = [ColSpec("float", c.name) for c in card.classes] + [ColSpec("string", LABEL)]
    return ModelSignature(
        Schema([TensorSpec(np.dtype(np.uint8), (-1, px, px, 3))]), Schema(outputs)
    )


def requirements() -> list[str]:
    """The packages the model loads with, pinned to the installed versions."""
    return [f"{name}=={metadata.version(name)}" for name in REQUIREMENTS]


def save(folder: Path, card: ModelCard, dst: Path, model: Any = None) -> Path:
    """Save the version in `folder` (card, spec, weights) as an MLflow pyfunc model at `dst`.

    Args:
        folder: the archived version folder.
        card: its card.
        dst: where the MLflow model folder is written (must not exist; its parent must).
        model: the `mlflow.models.Model` to fill (model id, run id), or None.
    """
    import mlflow.pyfunc

    from autoscope.archive.card import write_card

    files = {"card": CARD, "spec": card.spec, "weights": card.weights}
    staged = write_card(Path(tempfile.mkdtemp(dir=dst.parent)), _without_host_paths(card))
    artifacts = {key: str(Path(folder) / name) for key, name in files.items()}
    px = card.input.patch_px
    mlflow.pyfunc.save_model(
        path=str(dst),
        python_model=str(SCRIPT),
        artifacts={**artifacts, "card": str(staged)},
        signature=signature(card),
        input_example=np.full((1, px, px, 3), 128, np.uint8),
        pip_requirements=requirements(),
        mlflow_model=model,
        metadata={"autoscope_card": CARD, "task": card.task},
    )
    shutil.rmtree(staged.parent)
    _relative_paths(dst, files)
    return dst


def _without_host_paths(card: ModelCard) -> ModelCard:
    """The card as the MLflow model carries it: the reviewed slide by file name only."""
    from dataclasses import replace

    slide = dict(card.review_slide or {})
    if slide.get("path"):
        slide["path"] = Path(str(slide["path"])).name
    return replace(card, review_slide=slide or card.review_slide)


def _relative_paths(dst: Path, files: dict[str, str]) -> None:
    """Drop the host paths MLflow records in `MLmodel` (the script's and artefacts' sources)."""
    from mlflow.models import Model

    path = dst / "MLmodel"
    mlmodel = Model.load(str(path))
    flavor = mlmodel.flavors["python_function"]
    if flavor.get("model_code_path"):
        flavor["model_code_path"] = Path(flavor["model_code_path"]).name
    for key, entry in (flavor.get("artifacts") or {}).items():
        entry["uri"] = files[key]
    mlmodel.save(str(path))


def log_version(client: Any, model_id: str, folder: Path, card: ModelCard) -> bool:
    """Fill the logged model `model_id` with the version in `folder` and mark it ready.

    Idempotent: a model that is ready already is left as it is.

    Returns:
        whether the model's files were written now.
    """
    from mlflow.entities import LoggedModelStatus
    from mlflow.models import Model

    logged = client.get_logged_model(model_id)
    if logged.status == LoggedModelStatus.READY:
        return False
    tmp = Path(tempfile.mkdtemp(prefix="autoscope-pyfunc-"))
    try:
        info = Model(model_uuid=model_id, model_id=model_id, run_id=logged.source_run_id)
        save(folder, card, tmp / "model", info)
        client.log_model_artifacts(model_id, str(tmp / "model"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    client.finalize_logged_model(model_id, LoggedModelStatus.READY)
    return True
