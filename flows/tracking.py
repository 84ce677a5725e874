"""MLflow tracking for the flows: the ONLY module in lcmodel that imports mlflow.

One parent run per flow run, nested runs per tuning candidate or Optuna trial. Every call names its run id
explicitly (MLflow's active run is per thread, and Prefect may run tasks on other threads).

Embedded default: with no ``tracking.uri`` and no MLFLOW_TRACKING_URI, runs go to ``sqlite:///<cwd>/mlflow.db``
with artifacts in ``<cwd>/mlartifacts`` (an explicit artifact root: MLflow would otherwise put them in
``./mlruns`` whatever the tracking URI says).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import LoggedModelInput, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from lcmodel.config import RunConfig, flatten_config
from lcmodel.errors import LcmodelError
from lcmodel.model_io import side_file_path
from lcmodel.pipeline import StageOutcome

__all__ = [
    "CHAMPION",
    "COMPARE_COLUMNS",
    "LandcoverPyfunc",
    "PredictionRun",
    "TrackingLookupError",
    "Tracker",
    "compare_runs",
    "download_registered_bundle",
    "is_models_uri",
    "log_pyfunc_model",
    "promote",
    "promotion_decision",
    "resolve_tracking_uri",
    "resolve_uri",
    "scrub_uri",
]

log = logging.getLogger(__name__)

_CRED = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
# secrets passed as query parameters (?token=..., &access_key=..., &sig=...)
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&;](?:[a-z0-9_.-]*(?:token|key|secret|password|passwd|pwd|sig|signature|credential)[a-z0-9_.-]*)=)"
    r"[^&;#\s]+",
    re.IGNORECASE,
)
_MAX_PARAM = 6000
# pip requirements for the logged model: explicit, so log_model does not spend seconds inferring them
_REQUIREMENTS = ("scikit-learn", "numpy", "pandas", "joblib", "rasterio")
#: the alias that marks the model version in production
CHAMPION = "champion"
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")


class TrackingLookupError(LcmodelError, LookupError):
    """A registered model, version, alias or experiment does not exist in the tracking store."""


def scrub_uri(uri: str) -> str:
    """Remove credentials (``user:password@``, secret query parameters) from a URI before it is logged."""
    return _QUERY_SECRET.sub(r"\g<key>***", _CRED.sub(r"\g<scheme>***@", uri))


def resolve_tracking_uri(cfg: RunConfig, workdir: Path | None = None) -> tuple[str, str | None]:
    """(tracking URI, artifact root for new experiments or None to let the server decide)."""
    return resolve_uri(cfg.tracking.uri, workdir)


def resolve_uri(uri: str | None, workdir: Path | None = None) -> tuple[str, str | None]:
    """(tracking URI, artifact root) for an explicit URI, else MLFLOW_TRACKING_URI, else ./mlflow.db."""
    workdir = Path(workdir or Path.cwd()).resolve()
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        if uri.startswith("sqlite:///"):
            db = Path(uri.removeprefix("sqlite:///"))
            return uri, (db.parent / "mlartifacts").resolve().as_uri()
        return uri, None
    return f"sqlite:///{workdir / 'mlflow.db'}", (workdir / "mlartifacts").as_uri()


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("lcmodel", "scikit-learn", "numpy", "pandas", "rasterio", "pyproj", "prefect", "mlflow", "optuna"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


class Tracker:
    """The MLflow side of one flow run."""

    def __init__(self, cfg: RunConfig, *, flow_run_id: str | None = None, workdir: Path | None = None,
                 extra_tags: Mapping[str, str] | None = None) -> None:
        self.cfg = cfg
        self.uri, artifact_root = resolve_tracking_uri(cfg, workdir)
        mlflow.set_tracking_uri(self.uri)
        self.client = MlflowClient(tracking_uri=self.uri)
        name = cfg.tracking.experiment
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            self.experiment_id = self.client.create_experiment(name, artifact_location=artifact_root)
        else:
            self.experiment_id = exp.experiment_id
        tags = {
            "lcmodel.reference_kind": cfg.reference_kind,
            "lcmodel.reference": cfg.reference.path.name,
            "lcmodel.embedding": cfg.embedding.path.name,
            "lcmodel.method": cfg.tuning.method,
            "lcmodel.n_sample": str(cfg.sampling.n_sample),
            "lcmodel.kind": "training",
        }
        if flow_run_id:
            tags["prefect.flow_run_id"] = str(flow_run_id)
        tags.update(extra_tags or {})
        run = self.client.create_run(self.experiment_id, run_name=cfg.tracking.run_name, tags=tags)
        self.run_id: str = run.info.run_id
        self._candidates = 0

    # ------------------------------------------------------------------------------------------ params
    def log_config(self) -> None:
        flat = flatten_config(self.cfg)
        # no credential-bearing URI in any param (tracking.uri, but also e.g. an s3://key:secret@ path)
        params = [Param(k, scrub_uri(v)[:_MAX_PARAM]) for k, v in flat.items()]
        params += [Param(f"version.{k}", v) for k, v in _versions().items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[i : i + 100])

    def log_inputs(self, files: Mapping[str, Path | None]) -> dict[str, dict[str, Any]]:
        """Names, sizes and content hashes of the input files, as params and an artifact."""
        from lcmodel.io import sha256_file

        info: dict[str, dict[str, Any]] = {}
        params = []
        for role, path in files.items():
            if path is None:
                continue
            p = Path(path)
            entry = {"name": p.name, "size": p.stat().st_size, "sha256": sha256_file(p)}
            info[role] = entry
            params += [Param(f"input.{role}.{k}", str(v)) for k, v in entry.items()]
        self.client.log_batch(self.run_id, params=params)
        self.client.log_dict(self.run_id, info, "inputs.json")
        return info

    # -------------------------------------------------------------------------------------- candidates
    def log_candidate(self, info: Mapping[str, Any]) -> None:
        """One nested run per tuning candidate / Optuna trial, with its params and mean/std CV score."""
        stage = info.get("stage", 0)
        idx = info.get("trial", info.get("candidate", self._candidates))
        self._candidates += 1
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"stage{stage}-{'trial' if 'trial' in info else 'candidate'}{idx}",
            tags={"mlflow.parentRunId": self.run_id, "lcmodel.kind": "tuning-candidate"},
        )
        params = [Param(str(k), json.dumps(v) if not isinstance(v, str) else v)
                  for k, v in dict(info.get("params", {})).items()]
        params += [Param("stage", str(stage))]
        metrics = []
        for key in ("mean_score", "std_score", "fit_time"):
            value = info.get(key)
            if value is not None and np.isfinite(value):
                metrics.append(Metric(f"cv_{key}" if key != "fit_time" else key, float(value), 0, 0))
        for k, v in enumerate(info.get("fold_scores", []) or []):
            if v is not None and np.isfinite(v):
                metrics.append(Metric("cv_fold_score", float(v), 0, k))
        tags = [RunTag("state", str(info["state"]))] if "state" in info else []
        self.client.log_batch(run.info.run_id, metrics=metrics, params=params, tags=tags)
        self.client.set_terminated(run.info.run_id)

    # ----------------------------------------------------------------------------------------- results
    def log_tuning(self, tuning_summary: Mapping[str, Any], stage_files: Iterable[Path]) -> None:
        params = [Param(f"best.{k}", json.dumps(v)) for k, v in tuning_summary.get("best_params", {}).items()]
        metrics = [Metric("cv_best_score", float(tuning_summary["best_score"]), 0, 0),
                   Metric("tuning_time_s", float(tuning_summary.get("elapsed_s", 0.0)), 0, 0),
                   Metric("tuning_candidates", float(tuning_summary.get("n_candidates", 0)), 0, 0)]
        self.client.log_batch(self.run_id, metrics=metrics, params=params)
        for f in stage_files:
            self.client.log_artifact(self.run_id, str(f), "tuning")

    def log_metrics(self, metrics_path: Path) -> dict[str, Any]:
        data = json.loads(Path(metrics_path).read_text())
        test = data.get("test", {})
        metrics = [Metric(f"test_{k}", float(test[k]), 0, 0)
                   for k in ("overall_accuracy", "macro_f1", "kappa") if test.get(k) is not None]
        for value, pc in test.get("per_class", {}).items():
            if pc.get("f1") is not None:
                metrics.append(Metric(f"test_f1_class_{value}", float(pc["f1"]), 0, 0))
        cv = data.get("cv", {})
        if cv.get("best_score") is not None:
            metrics.append(Metric("cv_macro_f1" if cv.get("scoring") == "f1_macro" else "cv_best_score",
                                  float(cv["best_score"]), 0, 0))
        self.client.log_batch(self.run_id, metrics=metrics)
        return data

    def log_prediction(self, summary: Mapping[str, Any]) -> None:
        self.client.log_batch(self.run_id, metrics=_prediction_metrics(summary))
        self.client.log_dict(self.run_id, dict(summary), "prediction/prediction.json")

    def log_assessment(self, path: Path) -> None:
        """Area-adjusted accuracy (accuracy_assessment.json): overall accuracy and class areas with 95 % CIs."""
        data = json.loads(Path(path).read_text())
        if data.get("computed"):
            metrics = [Metric("area_adjusted_overall_accuracy", float(data["overall_accuracy"]), 0, 0),
                       Metric("area_adjusted_overall_accuracy_ci95", float(data["overall_accuracy_ci95"]), 0, 0)]
            for value, c in data["per_class"].items():
                for key in ("area_ha", "area_ha_ci95", "users_accuracy", "producers_accuracy"):
                    if c.get(key) is not None and c[key] == c[key]:  # not NaN
                        metrics.append(Metric(f"{key}_class_{value}", float(c[key]), 0, 0))
            self.client.log_batch(self.run_id, metrics=metrics)
        self.client.log_artifact(self.run_id, str(path), "accuracy")

    def log_cv_comparison(self, metrics_path: Path) -> None:
        """Random and spatial CV scores of the selected parameters (metrics.json ``cv_comparison``)."""
        comparison = json.loads(Path(metrics_path).read_text()).get("cv_comparison") or {}
        metrics = [Metric(f"cv_{name}_mean", float(comparison[name]["mean"]), 0, 0)
                   for name in ("random", "spatial") if "mean" in (comparison.get(name) or {})]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def log_artifacts(self, paths: Iterable[Path], folder: str | None = None) -> None:
        for p in paths:
            if p is not None and Path(p).is_file():
                self.client.log_artifact(self.run_id, str(p), folder)

    def log_model(self, fit: StageOutcome, register_as: str | None = None) -> dict[str, Any]:
        """Log the bundle as an MLflow pyfunc (:class:`LandcoverPyfunc`) and register it if asked: once per bundle.

        A model version is keyed by the bundle's SHA-256 (tag ``lcmodel.bundle_sha256``): a bundle already
        registered under ``register_as`` is not registered again, and a bundle reused from an earlier run
        (``fit_final`` cached) points to the model that run logged. Either way this run is tagged with the
        model's URI and ``lcmodel.model_reused``.

        The pyfunc carries the bundle (estimator, band names, class table, nodata rule) as its artifact
        ``model.joblib``; the bundle and its side file are also logged under ``bundle/``. When a new version
        is registered it gets the alias ``candidate``, and, with ``tracking.promote_if_better``,
        ``champion`` when it beats the current champion (see :meth:`promote_if_better`).
        """
        from lcmodel.model_io import load_bundle

        bundle_path, sha = fit.outputs.bundle.path, fit.outputs.bundle.sha256  # type: ignore[attr-defined]
        self.client.log_param(self.run_id, "bundle.sha256", sha)
        reused = self._registered_version(register_as, sha) if register_as else None
        if reused is None and fit.cached and not register_as:
            reused = self._model_of_run(fit.record.produced_by.get("mlflow_run_id"))
        if reused is not None:
            self.client.log_batch(self.run_id, tags=[RunTag("lcmodel.model_uri", reused["model_uri"]),
                                                     RunTag("lcmodel.model_reused", "true")])
            log.info("model bundle %s... is already logged as %s: nothing registered", sha[:12],
                     reused["model_uri"])
            return reused
        bundle = load_bundle(bundle_path)  # verified against the SHA-256 recorded at training
        info = log_pyfunc_model(self.run_id, bundle_path, bundle, register_as)
        self.client.log_artifact(self.run_id, str(bundle_path), "bundle")
        side = Path(str(bundle_path) + ".json")
        if side.is_file():
            self.client.log_artifact(self.run_id, str(side), "bundle")
        tags = {"lcmodel.model_uri": info.model_uri, "lcmodel.model_reused": "false"}
        if bundle.training_table_sha256:
            tags["lcmodel.training_table_sha256"] = bundle.training_table_sha256
        self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        out: dict[str, Any] = {"model_uri": info.model_uri}
        if register_as:
            version = str(info.registered_model_version)
            self.client.set_model_version_tag(register_as, version, "lcmodel.bundle_sha256", sha)
            self.client.set_registered_model_alias(register_as, "candidate", version)
            self.client.set_tag(self.run_id, "lcmodel.registered", f"{register_as}/{version}")
            out.update(name=register_as, version=version)
            if self.cfg.tracking.promote_if_better:
                out["promotion"] = self.promote_if_better(register_as, version)
        return out

    def _registered_version(self, name: str, sha: str) -> dict[str, Any] | None:
        """The version of ``name`` registered for the bundle with this SHA-256, if any."""
        try:
            versions = self.client.search_model_versions(f"name='{name}'")
        except MlflowException:
            return None
        for mv in versions:
            if (mv.tags or {}).get("lcmodel.bundle_sha256") == sha:
                return {"model_uri": f"models:/{name}/{mv.version}", "name": name, "version": str(mv.version),
                        "reused_from_run": mv.run_id}
        return None

    def _model_of_run(self, run_id: str | None) -> dict[str, Any] | None:
        """The model an earlier training run logged (its ``lcmodel.model_uri`` tag)."""
        if not run_id:
            return None
        try:
            uri = self.client.get_run(run_id).data.tags.get("lcmodel.model_uri")
        except MlflowException:
            return None
        return {"model_uri": uri, "reused_from_run": run_id} if uri else None

    def log_stages(self, outcomes: Mapping[str, StageOutcome]) -> None:
        """Which stages ran and which were reused (and which run produced them): tags and ``stages.json``."""
        cached = [n for n, o in outcomes.items() if o.cached]
        ran = [n for n, o in outcomes.items() if not o.cached]
        state = "all" if not ran else "none" if not cached else "partial"
        tags = [RunTag("lcmodel.cached", state), RunTag("lcmodel.stages_run", ",".join(ran) or "-"),
                RunTag("lcmodel.stages_cached", ",".join(cached) or "-")]
        producers = {o.record.produced_by.get("mlflow_run_id") for o in outcomes.values() if o.cached}
        producers.discard(None)
        producers.discard(self.run_id)
        if producers:
            tags.append(RunTag("lcmodel.cached_from_runs", ",".join(sorted(p for p in producers if p))))
        self.client.log_batch(self.run_id, tags=tags)
        self.client.log_dict(self.run_id, {n: {"cached": o.cached, "key": o.record.key,
                                               "produced_by": o.record.produced_by, "finished": o.record.finished,
                                               "artifacts": o.record.artifacts}
                                           for n, o in outcomes.items()}, "stages.json")

    def promote_if_better(self, name: str, version: str, alias: str = CHAMPION) -> str:
        """Give ``version`` the alias ``champion`` when its test macro-F1 beats the champion's.

        Both figures must come from the same test table (same training-table SHA-256, which covers the
        split); otherwise nothing is promoted. The decision, with both figures, is recorded as the tag
        ``lcmodel.promotion`` on this run and on the model version, and returned.
        """
        decision = promotion_decision(self.client, name, version, alias)
        if decision.startswith("promoted"):
            self.client.set_registered_model_alias(name, alias, version)
        self.client.set_tag(self.run_id, "lcmodel.promotion", decision)
        self.client.set_model_version_tag(name, version, "lcmodel.promotion", decision)
        log.info("model %s version %s: %s", name, version, decision)
        return decision

    def finish(self, error: BaseException | None = None) -> None:
        if error is not None:
            self.client.set_tag(self.run_id, "error", scrub_uri(str(error))[:5000])
            self.client.set_terminated(self.run_id, status="FAILED")
        else:
            self.client.set_terminated(self.run_id, status="FINISHED")

    @property
    def ui_hint(self) -> str:
        uri = scrub_uri(self.uri)
        return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1" if uri.startswith("sqlite") else uri


def _req(pkg: str) -> str:
    from importlib.metadata import version

    return f"{pkg}=={version(pkg)}"


def _prediction_metrics(summary: Mapping[str, Any]) -> list[Metric]:
    """Speed, pixel counts per class and class areas (ha) of a prediction summary."""
    metrics = [Metric("predict_px_per_s", float(summary["pixels_per_s"]), 0, 0),
               Metric("predict_time_s", float(summary["elapsed_s"]), 0, 0),
               Metric("predict_valid_pixels", float(summary["n_valid"]), 0, 0),
               Metric("predict_nodata_pixels", float(summary["n_nodata"]), 0, 0)]
    for value, count in summary.get("class_counts", {}).items():
        metrics.append(Metric(f"map_pixels_class_{value}", float(count), 0, 0))
    for value, ha in summary.get("class_area_ha", {}).items():
        metrics.append(Metric(f"map_area_ha_class_{value}", float(ha), 0, 0))
    return metrics


# ------------------------------------------------------------------------------------------ the pyfunc
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

        self.bundle = load_bundle(context.artifacts["bundle"])
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
    from lcmodel.pixels import nodata_class, predict_pixel_table

    example = _input_example(bundle)
    signature = infer_signature(example, predict_pixel_table(bundle, example),
                                params={"probabilities": False})
    metadata = {
        "lcmodel_band_names": list(bundle.band_names),
        "lcmodel_class_table": bundle.class_table.to_dict(),
        "lcmodel_nodata_rule": bundle.nodata_rule.to_dict(),
        "lcmodel_nodata_class": nodata_class(bundle),
        "lcmodel_training_table_sha256": bundle.training_table_sha256,
    }
    with mlflow.start_run(run_id=run_id):
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=LandcoverPyfunc(),
            # the side file travels with the bundle: loading checks the bundle's SHA-256 against it
            artifacts={"bundle": str(bundle_path), "bundle_sha256": str(side_file_path(bundle_path))},
            signature=signature,
            input_example=example,
            pip_requirements=[_req(p) for p in _REQUIREMENTS],
            registered_model_name=register_as,
            metadata=metadata,
        )


# ------------------------------------------------------------------------------------------ registry
def is_models_uri(ref: str | Path) -> bool:
    """True for a registry reference (``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``)."""
    return str(ref).startswith("models:/")


def _parse_models_uri(ref: str) -> tuple[str, str | None, str | None]:
    m = _MODELS_URI.match(ref)
    if m is None:
        raise TrackingLookupError(
            f"model reference {ref!r} is not a registry URI; give models:/NAME@ALIAS or models:/NAME/VERSION"
        )
    return m["name"], m["alias"], m["version"]


def _not_found(exc: MlflowException) -> bool:
    return exc.error_code == "RESOURCE_DOES_NOT_EXIST"


def _version_by_alias(client: MlflowClient, name: str, alias: str) -> Any | None:
    """The version that ``alias`` points at, or None (stores differ in the error they raise)."""
    version = client.get_registered_model(name).aliases.get(alias)
    return None if version is None else client.get_model_version(name, str(version))


def _model_version(client: MlflowClient, name: str, alias: str | None, version: str | None) -> Any:
    """The ModelVersion for an alias or a version number, or a one-line TrackingLookupError."""
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if not _not_found(exc):
            raise
        known = sorted(m.name for m in client.search_registered_models(max_results=50))
        raise TrackingLookupError(
            f"registered model {name!r} does not exist in {scrub_uri(client.tracking_uri)} (registered: "
            f"{', '.join(known) or 'none'}); check the name and MLFLOW_TRACKING_URI"
        ) from None
    if alias is not None:
        mv = _version_by_alias(client, name, alias)
        if mv is None:
            aliases = ", ".join(f"{a}=v{v}" for a, v in sorted(model.aliases.items())) or "none"
            raise TrackingLookupError(
                f"registered model {name!r} has no alias {alias!r} (aliases: {aliases}); set it with "
                f"`lcmodel promote {name} VERSION --alias {alias}`"
            )
        return mv
    try:
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        if not _not_found(exc):
            raise
        raise TrackingLookupError(
            f"registered model {name!r} has no version {version}; list its versions in the MLflow UI "
            "or give an alias (models:/NAME@champion)"
        ) from None


def download_registered_bundle(ref: str, dest: Path | str,
                               tracking_uri: str | None = None) -> tuple[Path, dict[str, str]]:
    """Download the bundle of a registered model version into ``dest``.

    Parameters
    ----------
    ref : ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``.
    dest : an existing folder (e.g. a temporary one) for the model's files.
    tracking_uri : the MLflow store; default MLFLOW_TRACKING_URI, else ``sqlite:///<cwd>/mlflow.db``.

    Returns
    -------
    (path of model.joblib, info)
        info holds ``model_name``, ``model_version``, ``model_uri`` (``ref``), ``model_run_id`` and
        ``model_id`` (MLflow's logged-model id, "" when unknown).
    """
    uri, _ = resolve_uri(tracking_uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name, alias, version = _parse_models_uri(ref)
    mv = _model_version(client, name, alias, version)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{name}/{mv.version}", dst_path=str(dest), tracking_uri=uri, registry_uri=uri
    )
    bundle = Path(local) / "artifacts" / "model.joblib"
    if not bundle.is_file():
        raise TrackingLookupError(
            f"models:/{name}/{mv.version} is not an lcmodel model (no artifacts/model.joblib); register "
            "models with the landcover flow (tracking.register_as)"
        )
    info = {"model_name": name, "model_version": str(mv.version), "model_uri": ref,
            "model_run_id": mv.run_id or "", "model_id": _logged_model_id(mv)}
    return bundle, info


def _logged_model_id(mv: Any) -> str:
    """MLflow 3's logged-model id of a version ("" if none); some stores leave ``model_id`` empty."""
    if getattr(mv, "model_id", None):
        return str(mv.model_id)
    source = str(mv.source or "")
    return source.removeprefix("models:/") if re.match(r"^models:/m-[0-9a-f]+$", source) else ""


def promotion_decision(client: MlflowClient, name: str, version: str, alias: str = CHAMPION) -> str:
    """Whether ``version`` should get ``alias``: one line starting with 'promoted' or 'not promoted'.

    Compares the test macro-F1 of the two versions' training runs, only when both were measured on the
    same test table (same ``lcmodel.training_table_sha256`` tag; the table holds the split).
    """
    new = client.get_model_version(name, version)
    new_run = client.get_run(str(new.run_id))
    new_f1 = new_run.data.metrics.get("test_macro_f1")
    if new_f1 is None:
        return f"not promoted: version {version} has no test macro-F1 (run {new.run_id})"
    current = _version_by_alias(client, name, alias)
    if current is None:
        return f"promoted: no {alias} before; test macro-F1 {new_f1:.4f}"
    if str(current.version) == str(version):
        return f"not promoted: version {version} is already {alias}"
    old_run = client.get_run(current.run_id)
    old_f1 = old_run.data.metrics.get("test_macro_f1")
    new_sha = new_run.data.tags.get("lcmodel.training_table_sha256", "")
    old_sha = old_run.data.tags.get("lcmodel.training_table_sha256", "")
    figures = f"test macro-F1 {new_f1:.4f} vs {alias} v{current.version}'s " + (
        f"{old_f1:.4f}" if old_f1 is not None else "none")
    if old_f1 is None or not new_sha or new_sha != old_sha:
        return (f"not promoted: not the same test table (training table {new_sha[:12] or '?'} vs "
                f"{old_sha[:12] or '?'}), {figures}; compare by hand, then `lcmodel promote {name} "
                f"{version} --alias {alias}`")
    if new_f1 > old_f1:
        return f"promoted: {figures}"
    return f"not promoted: {figures} (not better)"


def promote(name: str, version: str, alias: str = CHAMPION, tracking_uri: str | None = None) -> dict[str, str]:
    """Point ``alias`` at ``version`` of registered model ``name`` (by hand: no comparison).

    Returns ``{"name", "version", "alias", "previous"}`` (previous: the version the alias pointed at, or "").
    """
    uri, _ = resolve_uri(tracking_uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    _model_version(client, name, None, version)  # one-line errors for a wrong name or version
    previous = _version_by_alias(client, name, alias)
    client.set_registered_model_alias(name, alias, str(version))
    note = f"promoted to {alias} by hand" + (f" (was v{previous.version})" if previous is not None else "")
    client.set_model_version_tag(name, str(version), "lcmodel.promotion", note)
    return {"name": name, "version": str(version), "alias": alias,
            "previous": str(previous.version) if previous is not None else ""}


# ------------------------------------------------------------------------------------------ comparing
#: columns of :func:`compare_runs` (and of the MLflow UI's compare view: same tags and metrics)
COMPARE_COLUMNS = ("run_id", "run_name", "method", "n_sample", "reference_kind", "embedding",
                   "test_macro_f1", "cv_macro_f1", "tuning_time_s", "predict_px_per_s", "model")


def compare_runs(experiment: str, tracking_uri: str | None = None) -> list[dict[str, Any]]:
    """The training runs of an experiment, best test macro-F1 first (runs without it last).

    Nested tuning-candidate runs and prediction-flow runs are left out.
    """
    uri, _ = resolve_uri(tracking_uri)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        known = sorted(e.name for e in client.search_experiments(max_results=50))
        raise TrackingLookupError(
            f"experiment {experiment!r} does not exist in {scrub_uri(uri)} (experiments: "
            f"{', '.join(known) or 'none'}); check the name and MLFLOW_TRACKING_URI"
        )
    rows = []
    for run in client.search_runs([exp.experiment_id], max_results=5000):
        tags, metrics = run.data.tags, run.data.metrics
        if "mlflow.parentRunId" in tags or tags.get("lcmodel.kind") in {"tuning-candidate", "prediction"}:
            continue
        rows.append({
            "run_id": run.info.run_id,
            "run_name": run.info.run_name or "",
            "method": tags.get("lcmodel.method", ""),
            "n_sample": tags.get("lcmodel.n_sample", ""),
            "reference_kind": tags.get("lcmodel.reference_kind", ""),
            "embedding": tags.get("lcmodel.embedding", ""),
            "test_macro_f1": metrics.get("test_macro_f1"),
            "cv_macro_f1": metrics.get("cv_macro_f1", metrics.get("cv_best_score")),
            "tuning_time_s": metrics.get("tuning_time_s"),
            "predict_px_per_s": metrics.get("predict_px_per_s"),
            "model": tags.get("lcmodel.registered", ""),
            "start_time": run.info.start_time or 0,
        })
    rows.sort(key=lambda r: (r["test_macro_f1"] is None, -(r["test_macro_f1"] or 0.0), -r["start_time"]))
    return rows


# ------------------------------------------------------------------------------------------ prediction
class PredictionRun:
    """The MLflow run of one prediction (the landcover-predict flow), linked to the model version."""

    def __init__(self, *, experiment: str, tracking_uri: str | None, model: Mapping[str, str],
                 embedding_path: Path | str, flow_run_id: str | None = None) -> None:
        from lcmodel.io import sha256_file

        self.uri, artifact_root = resolve_uri(tracking_uri)
        mlflow.set_tracking_uri(self.uri)
        self.client = MlflowClient(tracking_uri=self.uri)
        exp = self.client.get_experiment_by_name(experiment)
        exp_id = (exp.experiment_id if exp is not None
                  else self.client.create_experiment(experiment, artifact_location=artifact_root))
        embedding = Path(embedding_path)
        self.input_sha256 = sha256_file(embedding)
        tags = {
            "lcmodel.kind": "prediction",
            "lcmodel.embedding": embedding.name,
            "input_sha256": self.input_sha256,
            **{k: str(v) for k, v in model.items() if v},
        }
        if flow_run_id:
            tags["prefect.flow_run_id"] = str(flow_run_id)
        run = self.client.create_run(exp_id, run_name=f"predict-{embedding.stem}", tags=tags)
        self.run_id: str = run.info.run_id
        self.client.log_batch(self.run_id, params=[
            Param("input.embedding.name", embedding.name),
            Param("input.embedding.size", str(embedding.stat().st_size)),
            Param("input.embedding.sha256", self.input_sha256),
            Param("model_uri", str(model.get("model_uri", ""))),
        ])
        if model.get("model_id"):  # MLflow 3: the run lists the logged model among its inputs
            self.client.log_inputs(self.run_id, models=[LoggedModelInput(model["model_id"])])

    def log_summary(self, summary: Mapping[str, Any]) -> None:
        """Speed, pixel counts and hectares per class, and the summary as prediction.json."""
        self.client.log_batch(self.run_id, metrics=_prediction_metrics(summary))
        self.client.log_dict(self.run_id, dict(summary), "prediction.json")

    def finish(self, error: BaseException | None = None) -> None:
        if error is not None:
            self.client.set_tag(self.run_id, "error", str(error)[:5000])
            self.client.set_terminated(self.run_id, status="FAILED")
        else:
            self.client.set_terminated(self.run_id, status="FINISHED")
