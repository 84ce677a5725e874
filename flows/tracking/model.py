"""The registered model: :class:`LandcoverPyfunc`, a model bundle behind MLflow's pyfunc interface, and
:func:`log_pyfunc_model` (signature, input example, pinned pip requirements, metadata).

The pyfunc is logged from code (MLflow's "models from code"): the model's ``python_model`` is the file
:mod:`flows.tracking.pyfunc_code`, which builds a :class:`LandcoverPyfunc` with ``mlflow.models.set_model``.
Nothing is pickled: loading or serving the model (``mlflow models serve``) imports lcmodel's class and loads the
bundle (``artifacts/model.skops``) through :func:`lcmodel.model_io.load_bundle`, which rebuilds the estimator
from data, after checking the file's SHA-256 against the one recorded at logging (``model_config``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from lcmodel.errors import LcmodelError

__all__ = ["CODE_FILE", "LandcoverPyfunc", "log_pyfunc_model"]

# pip requirements for the logged model: explicit, so log_model does not spend seconds inferring them
_REQUIREMENTS = ("scikit-learn", "numpy", "pandas", "skops", "rasterio")
#: the models-from-code file MLflow copies into the logged model and runs to build the pyfunc
CODE_FILE = Path(__file__).with_name("pyfunc_code.py")


def _req(pkg: str) -> str:
    from importlib.metadata import version

    return f"{pkg}=={version(pkg)}"


class LandcoverPyfunc(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    """The registered model: a model bundle behind MLflow's pyfunc interface.

    Input: a pixel table, one row per pixel, one column per band named as in the signature (the raster's
    values as stored). Output: a DataFrame with ``class``, plus ``p_<value>`` per class when called with
    ``params={"probabilities": True}``. The bundle's nodata rule applies: nodata pixels (all-zero vectors,
    the declared nodata value) get the class value 0 (the map's nodata) and probabilities 0. Wrong columns,
    no rows or NaN raise an MlflowException with INVALID_PARAMETER_VALUE (HTTP 400 when served) whose
    message is the one-line :class:`~lcmodel.errors.InputDataError` text.
    """

    def load_context(self, context: Any) -> None:
        from lcmodel.forest import Predictor
        from lcmodel.model_io import load_bundle

        expected = (getattr(context, "model_config", None) or {}).get("bundle_sha256")
        self.bundle = load_bundle(context.artifacts["bundle"], expected_sha256=expected)
        self.predictor = Predictor(self.bundle.estimator)  # once: compiles a random forest

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        from lcmodel.pixels import predict_pixel_table

        probabilities = bool((params or {}).get("probabilities", False))
        try:
            return predict_pixel_table(self.bundle, model_input, probabilities=probabilities,
                                       predictor=self.predictor)
        except LcmodelError as exc:
            raise MlflowException.invalid_parameter_value(str(exc)) from None


def _input_example(bundle: Any) -> Any:
    """Three pixels in the raster's encoding (floats for float embeddings, integer codes otherwise)."""
    rng = np.random.default_rng(0)
    shape = (3, bundle.n_bands)
    if np.dtype(bundle.nodata_rule.dtype).kind == "f":
        values = rng.uniform(-0.2, 0.2, size=shape)
    else:
        values = rng.integers(1, 100, size=shape).astype(np.float64)
    return pd.DataFrame(values, columns=list(bundle.band_names))


def log_pyfunc_model(run_id: str, bundle_path: Path, bundle: Any, register_as: str | None = None) -> Any:
    """Log ``bundle_path`` as a :class:`LandcoverPyfunc` model of run ``run_id`` (registered if asked).

    The signature names one double column per band and the param ``probabilities`` (default false);
    the MLmodel metadata carries the band names, class table, nodata rule and nodata class value.
    Returns MLflow's ModelInfo.
    """
    from lcmodel.io import sha256_file
    from lcmodel.pixels import nodata_class, predict_pixel_table

    example = _input_example(bundle)
    signature = infer_signature(example, predict_pixel_table(bundle, example),
                                params={"probabilities": False})
    metadata = {
        "lcmodel_band_names": list(bundle.band_names),
        "lcmodel_band_indexes": bundle.source_indexes,  # 1-based bands of the training raster
        "lcmodel_class_table": bundle.class_table.to_dict(),
        "lcmodel_nodata_rule": bundle.nodata_rule.to_dict(),
        "lcmodel_nodata_class": nodata_class(bundle),
        "lcmodel_training_table_sha256": bundle.training_table_sha256,
    }
    with mlflow.start_run(run_id=run_id):
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(CODE_FILE),  # models from code: nothing pickled
            artifacts={"bundle": str(bundle_path)},
            # loading checks the bundle's SHA-256 against the one recorded here
            model_config={"bundle_sha256": sha256_file(bundle_path)},
            signature=signature,
            input_example=example,
            pip_requirements=[_req(p) for p in _REQUIREMENTS],
            registered_model_name=register_as,
            metadata=metadata,
        )
