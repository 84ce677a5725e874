"""MLflow tracking for the flows: the ONLY package in lcmodel that imports mlflow.

One parent run per flow run, nested runs per tuning candidate or Optuna trial. Every call names its run id
explicitly (MLflow's active run is per thread, and Prefect may run tasks on other threads).

Embedded default: with no ``tracking.uri`` and no MLFLOW_TRACKING_URI, runs go to ``sqlite:///<cwd>/mlflow.db``
with artifacts in ``<cwd>/mlartifacts`` (an explicit artifact root: MLflow would otherwise put them in
``./mlruns`` whatever the tracking URI says).

- :mod:`~flows.tracking.uris`: which store (tracking URI, artifact root) and URIs without credentials;
- :mod:`~flows.tracking.runs`: :class:`Tracker` (a training run) and :class:`PredictionRun`;
- :mod:`~flows.tracking.figures`: figures to metrics; an undefined one (None/NaN/inf) is the tag
  ``lcmodel.undefined.<metric>`` with its reason (:data:`UNDEFINED_TAG`);
- :mod:`~flows.tracking.model`: :class:`LandcoverPyfunc`, the registered model, and how it is logged (from code:
  :mod:`~flows.tracking.pyfunc_code`, nothing pickled);
- :mod:`~flows.tracking.registry`: ``models:/`` references, downloading a bundle (checked against the run's
  ``bundle.sha256``), promotion (:data:`CHAMPION`);
- :mod:`~flows.tracking.compare`: the training runs of an experiment side by side;
- :mod:`~flows.tracking.stores`: read-only commands refuse a missing or non-database SQLite store.

Import from here. Models registered before models-from-code pickled ``flows.tracking.LandcoverPyfunc`` with a
``model.joblib``: the re-export stays for them, but lcmodel refuses their pickled bundle; retrain.
"""

from __future__ import annotations

from flows.tracking.compare import COMPARE_COLUMNS, compare_runs
from flows.tracking.figures import UNDEFINED_TAG, log_figures
from flows.tracking.model import LandcoverPyfunc, log_pyfunc_model
from flows.tracking.registry import (
    CHAMPION,
    RegistryArgumentError,
    TrackingLookupError,
    check_alias,
    check_version,
    download_registered_bundle,
    is_models_uri,
    promote,
    promotion_decision,
)
from flows.tracking.runs import PredictionRun, Tracker
from flows.tracking.stores import TrackingStoreError, require_existing_store
from flows.tracking.uris import resolve_tracking_uri, resolve_uri, scrub_uri

__all__ = [
    "CHAMPION",
    "COMPARE_COLUMNS",
    "LandcoverPyfunc",
    "PredictionRun",
    "RegistryArgumentError",
    "TrackingLookupError",
    "TrackingStoreError",
    "UNDEFINED_TAG",
    "Tracker",
    "check_alias",
    "check_version",
    "compare_runs",
    "download_registered_bundle",
    "is_models_uri",
    "log_figures",
    "log_pyfunc_model",
    "promote",
    "promotion_decision",
    "require_existing_store",
    "resolve_tracking_uri",
    "resolve_uri",
    "scrub_uri",
]
