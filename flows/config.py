"""The flow's config: the library's :class:`~lcmodel.config.RunConfig` plus what only orchestration uses.

- ``tracking``: MLflow (experiment, run name, registry name, tracking URI, promotion);
- ``prediction.task_runner`` / ``dask_address`` / ``blocks_per_task``: where the flow predicts the blocks.

The library never sees these (its stages take their own settings, lcmodel/pipeline/settings.py); the same
config file serves both, and the plain commands of the `lcmodel` console script accept it too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from flows.credentials import CREDENTIAL_VARIABLES_HINT, scrub_uri, uri_secrets
from lcmodel.config import ConfigSection, PredictionConfig, RunConfig, config_from_dict, load_config

__all__ = ["FlowConfig", "FlowPredictionConfig", "TrackingConfig", "load_flow_config", "flow_config",
           "flow_config_from_dict"]


class TrackingConfig(ConfigSection):
    """MLflow tracking (used by the Prefect flow; the plain library never imports mlflow)."""

    experiment: str = "lcmodel"
    run_name: str | None = None
    register_as: str | None = None
    uri: str | None = None
    promote_if_better: bool = Field(
        False, description="give the new version the alias 'champion' when its test macro-F1 beats the "
        "current champion's on the same test table"
    )

    @model_validator(mode="before")
    @classmethod
    def _uri_holds_no_secret(cls, data: Any) -> Any:
        """Refuse credentials in ``uri``: the config is stored with every run (bundle, params, Prefect).

        A section-level check, so the refusal names the scrubbed URI, never the value itself.
        """
        uri = data.get("uri") if isinstance(data, dict) else None
        found = uri_secrets(uri) if isinstance(uri, str) else []
        if found:
            raise ValueError(f"uri {scrub_uri(uri)} holds credentials ({', '.join(found)}); the config is stored "  # type: ignore[arg-type]
                             f"with every run, so remove them from the URI and {CREDENTIAL_VARIABLES_HINT}")
        return data


class FlowPredictionConfig(PredictionConfig):
    """The library's prediction settings plus where the flow runs the blocks."""

    task_runner: Literal["threads", "dask"] = Field(
        "threads", description="threads: worker processes on this machine; dask: block groups as Prefect tasks "
        "on a Dask cluster (the Prefect flows only; needs the 'dask' extra)"
    )
    dask_address: str | None = Field(
        None, description="scheduler of an existing Dask cluster (tcp://host:8786); null = a local cluster"
    )
    blocks_per_task: int = Field(16, ge=1, description="windows per Dask task (each task writes its own part)")


class FlowConfig(RunConfig):
    """A run as the flow sees it: the library's settings, tracking and the flow's prediction settings."""

    prediction: FlowPredictionConfig = FlowPredictionConfig()
    tracking: TrackingConfig = TrackingConfig()


def load_flow_config(path: Path | str) -> FlowConfig:
    """Read and validate a YAML/TOML config file as a :class:`FlowConfig`."""
    return load_config(path, model=FlowConfig)


def flow_config_from_dict(data: dict[str, Any], base_dir: Path | str | None = None) -> FlowConfig:
    return config_from_dict(data, base_dir=base_dir, model=FlowConfig)


def flow_config(cfg: RunConfig | str | Path) -> FlowConfig:
    """A FlowConfig from a config file path, a FlowConfig, or a plain RunConfig (flow settings at defaults)."""
    if isinstance(cfg, str | Path):
        return load_flow_config(cfg)
    if isinstance(cfg, FlowConfig):
        return cfg
    return FlowConfig.model_validate(cfg.model_dump(mode="python"))
