"""MLflow runs: :class:`Tracker`, the training run of one landcover flow run (config, inputs, tuning
candidates as nested runs, metrics, artifacts, the model, finish), and :class:`PredictionRun`, the run of
one landcover-predict flow run, linked to the model version it used.

Every call names its run id explicitly (MLflow's active run is per thread, and Prefect may run tasks on other
threads).
"""

from __future__ import annotations

import json
import logging
import platform
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import LoggedModelInput, Param, RunTag
from mlflow.exceptions import MlflowException

from flows.config import FlowConfig
from flows.tracking.figures import Figure, assessment_figures, log_figures
from flows.tracking.model import log_pyfunc_model
from flows.tracking.registry import CHAMPION, promotion_decision
from flows.tracking.stores import get_or_create_experiment, open_client, require_reachable_server
from flows.tracking.uris import resolve_tracking_uri, resolve_uri, scrub_uri
from lcmodel.config import flatten_config, spec_text
from lcmodel.pipeline import StageOutcome

__all__ = ["PredictionRun", "Tracker"]

log = logging.getLogger(__name__)

_MAX_PARAM = 6000


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

    def __init__(self, cfg: FlowConfig, *, flow_run_id: str | None = None, workdir: Path | None = None,
                 extra_tags: Mapping[str, str] | None = None) -> None:
        self.cfg = cfg
        self.uri, artifact_root = resolve_tracking_uri(cfg, workdir)
        require_reachable_server(self.uri)  # one line within seconds, not minutes of MLflow's retries
        mlflow.set_tracking_uri(self.uri)
        self.client = open_client(self.uri)  # a new SQLite store: created by one process at a time
        self.experiment_id = get_or_create_experiment(self.client, cfg.tracking.experiment, artifact_root)
        tags = {
            "lcmodel.reference_kind": cfg.reference_kind,
            "lcmodel.reference": spec_text(cfg.reference.path),
            "lcmodel.embedding": spec_text(cfg.embedding.path),
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
        figures: list[Figure] = [(f"cv_{key}" if key != "fit_time" else key, info[key], 0)
                                 for key in ("mean_score", "std_score", "fit_time") if key in info]
        figures += [("cv_fold_score", v, k) for k, v in enumerate(info.get("fold_scores", []) or [])]
        tags = [RunTag("state", str(info["state"]))] if "state" in info else []
        self.client.log_batch(run.info.run_id, params=params, tags=tags)
        log_figures(self.client, run.info.run_id, figures)  # a failed trial's NaN score is a tag, not a metric
        self.client.set_terminated(run.info.run_id)

    # ----------------------------------------------------------------------------------------- results
    def log_tuning(self, tuning_summary: Mapping[str, Any], stage_files: Iterable[Path]) -> None:
        params = [Param(f"best.{k}", json.dumps(v)) for k, v in tuning_summary.get("best_params", {}).items()]
        self.client.log_batch(self.run_id, params=params)
        log_figures(self.client, self.run_id, [("cv_best_score", tuning_summary.get("best_score"), 0),
                                               ("tuning_time_s", tuning_summary.get("elapsed_s", 0.0), 0),
                                               ("tuning_candidates", tuning_summary.get("n_candidates", 0), 0)])
        for f in stage_files:
            self.client.log_artifact(self.run_id, str(f), "tuning")

    def log_metrics(self, metrics_path: Path) -> dict[str, Any]:
        data = json.loads(Path(metrics_path).read_text())
        test = data.get("test", {})
        figures: list[Figure] = [(f"test_{k}", test[k], 0) for k in ("overall_accuracy", "macro_f1", "kappa")
                                 if k in test]
        figures += [(f"test_f1_class_{value}", pc["f1"], 0)
                    for value, pc in (test.get("per_class") or {}).items() if "f1" in pc]
        cv = data.get("cv") or {}
        if "best_score" in cv:
            figures.append(("cv_macro_f1" if cv.get("scoring") == "f1_macro" else "cv_best_score",
                            cv["best_score"], 0))
        log_figures(self.client, self.run_id, figures)
        return data

    def log_prediction(self, summary: Mapping[str, Any]) -> None:
        log_figures(self.client, self.run_id, prediction_figures(summary))
        self.client.log_dict(self.run_id, dict(summary), "prediction/prediction.json")

    def log_assessment(self, path: Path) -> dict[str, str]:
        """Area-adjusted accuracy (accuracy_assessment.json): overall accuracy and class areas with 95 % CIs.

        An estimate the assessment could not compute (null, with its reason under ``undefined``) is the tag
        ``lcmodel.undefined.<metric>`` holding that reason; the defined ones are logged as metrics. Returns
        ``{metric: reason}`` of the undefined ones.
        """
        data = json.loads(Path(path).read_text())
        figures, reasons = assessment_figures(data)
        undefined = log_figures(self.client, self.run_id, figures, reasons)
        missing = data.get("not_assessed") or []
        if "not_assessed" in data:  # which strata the estimate leaves out (none: the whole map)
            self.client.set_tag(self.run_id, "lcmodel.not_assessed", ", ".join(
                f"class {r['class']} ({r['map_share']:.2%} of the map)" for r in missing) or "none")
        if undefined:
            log.warning("area-adjusted assessment: %d estimate(s) undefined (tags %s*): %s", len(undefined),
                        "lcmodel.undefined.", "; ".join(dict.fromkeys(undefined.values())))
        self.client.log_artifact(self.run_id, str(path), "accuracy")
        return undefined

    def log_applicability(self, path: Path) -> None:
        """The area of applicability (aoa.json): ``aoa_outside_fraction``, per predicted class
        ``aoa_outside_fraction_class_<value>``, for a tile collection per tile ``aoa_outside_fraction_tile_<stem>``,
        the test accuracy inside / outside, and the file itself."""
        data = json.loads(Path(path).read_text())
        self.client.log_artifact(self.run_id, str(path), "aoa")
        if not data.get("computed"):
            self.client.set_tag(self.run_id, "lcmodel.aoa", f"not computed: {data.get('reason')}")
            return
        figures: list[Figure] = [("aoa_outside_fraction", data["outside_fraction"], 0),
                                 ("aoa_threshold", data["threshold"], 0)]
        figures += [(f"aoa_outside_fraction_class_{v}", c["outside_fraction"], 0)
                    for v, c in data["per_class"].items()]
        figures += [(f"aoa_outside_fraction_tile_{t['tile']}", t["outside_fraction"], 0)
                    for t in data.get("tiles") or () if t["outside_fraction"] is not None]
        for part, acc in (data.get("test_accuracy") or {}).items():
            if acc.get("overall_accuracy") is not None:
                figures.append((f"aoa_test_accuracy_{part}", acc["overall_accuracy"], 0))
        log_figures(self.client, self.run_id, figures)

    def log_split(self, blocks_path: Path) -> None:
        """The test split's shares (spatial_blocks.json ``summary``): ``split_test_share``, per class
        ``split_test_share_class_<value>``, ``split_shares_met`` (1 / 0) and the tag ``lcmodel.split`` (the
        strategy and, where a share misses the tolerance, by how much and why)."""
        summary = json.loads(Path(blocks_path).read_text()).get("summary")
        if not summary:
            return
        figures: list[Figure] = [("split_test_share", summary["test_share"], 0),
                                 ("split_tolerance", summary["tolerance"], 0),
                                 ("split_shares_met", 1.0 if summary["met"] else 0.0, 0)]
        figures += [(f"split_test_share_class_{v}", c["test_share"], 0) for v, c in summary["per_class"].items()]
        log_figures(self.client, self.run_id, figures)
        verdict = "within tolerance" if summary["met"] else "; ".join(summary.get("unmet") or [])
        self.client.set_tag(self.run_id, "lcmodel.split", f"{summary['strategy']}: {verdict}"[:5000])

    def log_cv_comparison(self, metrics_path: Path) -> None:
        """Random and spatial CV scores of the selected parameters (metrics.json ``cv_comparison``)."""
        comparison = json.loads(Path(metrics_path).read_text()).get("cv_comparison") or {}
        figures: list[Figure] = [(f"cv_{name}_mean", comparison[name]["mean"], 0)
                                 for name in ("random", "spatial") if "mean" in (comparison.get(name) or {})]
        if figures:
            log_figures(self.client, self.run_id, figures)

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
        ``model.skops``; the bundle and its side file are also logged under ``bundle/``. When a new version
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
        bundle = load_bundle(bundle_path, expected_sha256=sha)  # the file the stage recorded
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
        finish_run(self.client, self.run_id, error)

    @property
    def ui_hint(self) -> str:
        uri = scrub_uri(self.uri)
        return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1" if uri.startswith("sqlite") else uri


def prediction_figures(summary: Mapping[str, Any]) -> list[Figure]:
    """Speed, pixel counts per class and class areas (ha) of a prediction summary."""
    figures: list[Figure] = [("predict_px_per_s", summary.get("pixels_per_s"), 0),
                             ("predict_time_s", summary.get("elapsed_s"), 0),
                             ("predict_valid_pixels", summary.get("n_valid"), 0),
                             ("predict_nodata_pixels", summary.get("n_nodata"), 0)]
    figures += [(f"map_pixels_class_{value}", count, 0) for value, count in summary.get("class_counts", {}).items()]
    figures += [(f"map_area_ha_class_{value}", ha, 0) for value, ha in summary.get("class_area_ha", {}).items()]
    return figures


class PredictionRun:
    """The MLflow run of one prediction (the landcover-predict flow), linked to the model version."""

    def __init__(self, *, experiment: str, tracking_uri: str | None, model: Mapping[str, str],
                 embedding_path: Path | str, flow_run_id: str | None = None) -> None:
        from lcmodel.io import sha256_file
        from lcmodel.sources import file_name, identity_digest, is_remote, redact, remote_identity

        self.uri, artifact_root = resolve_uri(tracking_uri)
        mlflow.set_tracking_uri(self.uri)
        self.client = open_client(self.uri)
        exp_id = get_or_create_experiment(self.client, experiment, artifact_root)
        remote = is_remote(embedding_path)
        if remote:  # never downloaded whole: the digest of its identity (ETag, Last-Modified, size)
            identity = remote_identity(embedding_path)
            self.input_sha256 = identity_digest(embedding_path, identity=identity)
            name, size = file_name(embedding_path), identity.get("size")
        else:
            embedding = Path(embedding_path)
            self.input_sha256 = sha256_file(embedding)
            name, size = embedding.name, embedding.stat().st_size
        tags = {
            "lcmodel.kind": "prediction",
            "lcmodel.embedding": name,
            "input_sha256": self.input_sha256,
            **{k: str(v) for k, v in model.items() if v},
        }
        if flow_run_id:
            tags["prefect.flow_run_id"] = str(flow_run_id)
        run = self.client.create_run(exp_id, run_name=f"predict-{Path(name).stem}", tags=tags)
        self.run_id: str = run.info.run_id
        self.client.log_batch(self.run_id, params=[
            Param("input.embedding.name", name),
            Param("input.embedding.size", str(size)),
            Param("input.embedding.sha256", self.input_sha256),
            Param("model_uri", str(model.get("model_uri", ""))),
            *([Param("input.embedding.url", redact(embedding_path))] if remote else []),
        ])
        if model.get("model_id"):  # MLflow 3: the run lists the logged model among its inputs
            self.client.log_inputs(self.run_id, models=[LoggedModelInput(model["model_id"])])

    def log_summary(self, summary: Mapping[str, Any]) -> None:
        """Speed, pixel counts and hectares per class, and the summary as prediction.json."""
        log_figures(self.client, self.run_id, prediction_figures(summary))
        self.client.log_dict(self.run_id, dict(summary), "prediction.json")

    def finish(self, error: BaseException | None = None) -> None:
        finish_run(self.client, self.run_id, error)


def finish_run(client: MlflowClient, run_id: str, error: BaseException | None = None) -> None:
    """End a run: FINISHED, or FAILED with the one-line error (scrubbed of credentials) as the tag ``error``."""
    if error is not None:
        client.set_tag(run_id, "error", scrub_uri(str(error))[:5000])
        client.set_terminated(run_id, status="FAILED")
    else:
        client.set_terminated(run_id, status="FINISHED")
