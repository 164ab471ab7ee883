"""The "models from code" script of an archived model's MLflow pyfunc flavour.

MLflow copies this file into the logged model and runs it at load time; it only names the
wrapper, which lives in the installed `autoscope` package (`autoscope.archive.pyfunc`).
"""

from mlflow.models import set_model

from autoscope.archive.pyfunc import PatchClassifierPyfunc

set_model(PatchClassifierPyfunc())
