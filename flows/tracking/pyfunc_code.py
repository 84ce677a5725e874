"""The registered model's code (MLflow "models from code"): MLflow runs this file to build the pyfunc.

:func:`flows.tracking.model.log_pyfunc_model` logs this file as the model's ``python_model``; loading the model
(``mlflow.pyfunc.load_model``, ``mlflow models serve``) runs it instead of unpickling a ``python_model.pkl``. It
only imports the installed :class:`~flows.tracking.model.LandcoverPyfunc` and hands an instance to MLflow, which
then calls its ``load_context``: the bundle is loaded by :func:`lcmodel.model_io.load_bundle` (data, no pickle).
"""

from __future__ import annotations

import mlflow.models

from flows.tracking.model import LandcoverPyfunc

mlflow.models.set_model(LandcoverPyfunc())
