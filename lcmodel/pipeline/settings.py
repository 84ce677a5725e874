"""Each stage's settings: exactly the config values the stage uses, each field naming the config key(s) it comes from.

A settings class is a frozen dataclass whose fields are declared with :func:`setting`:

    random_state: int = setting("sampling.random_state")
    kind: str = setting("reference.kind", "reference.path", derive=resolve_reference_kind)

:meth:`StageSettings.from_config` fills the fields from a :class:`~lcmodel.config.RunConfig`, and
:meth:`StageSettings.key_values` is what the stage's cache key hashes: every field except those declared
``runtime=True`` (worker counts that change how fast a stage runs, never what it writes; each such claim is
tested). Nothing else of the config reaches a stage, so its key cannot miss a value it reads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from lcmodel.config import GridValue, RunConfig, resolve_reference_kind, spec_text

__all__ = [
    "StageSettings",
    "setting",
    "config_value",
    "SampleReferenceSettings",
    "PreparePointsSettings",
    "ExtractSettings",
    "TrainingTableSettings",
    "TuneSettings",
    "EvaluateSettings",
    "FitSettings",
    "PredictSettings",
    "NoSettings",
    "ReportSettings",
    "AoaSettings",
]

_S = TypeVar("_S", bound="StageSettings")


def setting(*keys: str, derive: Callable[..., Any] | None = None, runtime: bool = False) -> Any:
    """Declare a settings field taken from the config ``keys`` (dotted), optionally combined by ``derive``.

    ``runtime=True``: the value changes how the stage runs (threads, workers), not what it writes, so it is
    left out of the cache key.
    """
    if not keys:
        raise TypeError("a setting names at least one config key")
    if len(keys) > 1 and derive is None:
        raise TypeError(f"setting {keys} takes several keys and needs derive=")
    return dataclasses.field(metadata={"config": keys, "derive": derive, "runtime": runtime})


def config_value(cfg: RunConfig, dotted: str) -> Any:
    """The config value at a dotted key such as ``sampling.random_state``."""
    value: Any = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _plain(value: Any) -> Any:
    """A JSON-able, hashable-by-content form of a settings value."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class StageSettings:
    """Base of every stage's settings (see the module docstring)."""

    #: What the settings are for, in DESIGN.md's generated table.
    about: ClassVar[str] = ""

    @classmethod
    def from_config(cls: type[_S], cfg: RunConfig) -> _S:
        values: dict[str, Any] = {}
        for f in fields(cls):
            keys, derive = f.metadata["config"], f.metadata["derive"]
            raw = [config_value(cfg, k) for k in keys]
            values[f.name] = derive(*raw) if derive is not None else raw[0]
        return cls(**values)

    @classmethod
    def config_keys(cls, *, runtime: bool | None = None) -> dict[str, tuple[str, ...]]:
        """field -> the config keys it comes from (``runtime``: only runtime fields, only keyed ones, or all)."""
        return {
            f.name: tuple(f.metadata["config"])
            for f in fields(cls)
            if runtime is None or bool(f.metadata["runtime"]) == runtime
        }

    def key_values(self) -> dict[str, Any]:
        """The values the cache key hashes: every field but the runtime ones."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self) if not f.metadata["runtime"]}

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def _first_set(value: int | None, fallback: int) -> int:
    return value if value is not None else fallback


def _file_name(path: Path | tuple[str, ...]) -> str:
    return spec_text(path)


def _file_names(paths: tuple[Path, ...]) -> tuple[str, ...]:
    return tuple(Path(p).name for p in paths)


# ------------------------------------------------------------------------------------------ the stages'
@dataclass(frozen=True)
class SampleReferenceSettings(StageSettings):
    about: ClassVar[str] = "how reference points are drawn from a class raster or read from a point file"

    kind: Literal["raster", "points"] = setting("reference.kind", "reference.path", derive=resolve_reference_kind)
    n_points: int = setting("reference.n_points")
    nodata: float | None = setting("reference.nodata")
    x_column: str = setting("reference.x_column")
    y_column: str = setting("reference.y_column")
    label_column: str = setting("reference.label_column")
    crs: str = setting("reference.crs")
    layer: str | int | None = setting("reference.layer")
    random_state: int = setting("sampling.random_state")
    purity_window: int | None = setting("sampling.purity_window")
    #: the files' names (their content is the stage's ``extra`` input: :class:`ExtraPointsSource`)
    extra_points: tuple[str, ...] = setting("reference.extra_points", derive=_file_names)
    n_threads: int = setting("n_jobs", runtime=True)


@dataclass(frozen=True)
class PreparePointsSettings(StageSettings):
    about: ClassVar[str] = "the class table's columns (codes -> values, names, colours)"

    code_column: str = setting("classes.code_column")
    value_column: str = setting("classes.value_column")
    name_column: str | None = setting("classes.name_column")
    color_column: str | None = setting("classes.color_column")


@dataclass(frozen=True)
class ExtractSettings(StageSettings):
    about: ClassVar[str] = "the embedding's nodata override, its band selection and per-pixel de-duplication"

    nodata: float | None = setting("embedding.nodata")
    bands: tuple[str | int, ...] | None = setting("embedding.bands")
    dedupe_pixels: bool = setting("sampling.dedupe_pixels")
    n_threads: int = setting("n_jobs", runtime=True)


@dataclass(frozen=True)
class TrainingTableSettings(StageSettings):
    about: ClassVar[str] = "subsampling, rare classes, the split and the spatial blocks of the CV"

    kind: Literal["raster", "points"] = setting("reference.kind", "reference.path", derive=resolve_reference_kind)
    n_sample: int = setting("sampling.n_sample")
    n_points: int = setting("reference.n_points")
    min_class_fraction: float = setting("sampling.min_class_fraction")
    test_size: float = setting("sampling.test_size")
    random_state: int = setting("sampling.random_state")
    split: str = setting("sampling.split")
    block_size: float | None = setting("sampling.block_size")
    split_tolerance: float = setting("sampling.split_tolerance")
    cv: int = setting("tuning.cv")
    cv_strategy: str = setting("tuning.cv_strategy")
    purity_window: int | None = setting("sampling.purity_window")
    purity_test: bool = setting("sampling.purity_test")

    @property
    def n_sample_effective(self) -> int:
        """The notebook reduces n_sample to n_points when sampling a raster and n_sample is larger."""
        return min(self.n_sample, self.n_points) if self.kind == "raster" else self.n_sample


@dataclass(frozen=True)
class TuneSettings(StageSettings):
    about: ClassVar[str] = "the tuning method, its candidates and scoring"

    method: str = setting("tuning.method")
    score_on: str = setting("tuning.score_on")
    halving_factor: int = setting("tuning.halving_factor")
    cv: int = setting("tuning.cv")
    scoring: str = setting("tuning.scoring")
    stages: tuple[dict[str, tuple[GridValue, ...]], ...] = setting("tuning.stages")
    n_trials: int = setting("tuning.n_trials")
    timeout_s: float | None = setting("tuning.timeout_s")
    random_state: int = setting("sampling.random_state")
    n_jobs: int = setting("n_jobs", runtime=True)


@dataclass(frozen=True)
class EvaluateSettings(StageSettings):
    about: ClassVar[str] = "the test-part evaluation, random vs spatial CV, and the report's notes"

    kind: Literal["raster", "points"] = setting("reference.kind", "reference.path", derive=resolve_reference_kind)
    reference_name: str = setting("reference.path", derive=_file_name)
    cv: int = setting("tuning.cv")
    scoring: str = setting("tuning.scoring")
    random_state: int = setting("sampling.random_state")
    n_jobs: int = setting("n_jobs", runtime=True)


@dataclass(frozen=True)
class FitSettings(StageSettings):
    """``n_jobs`` is keyed here: the saved forest keeps it (its own ``n_jobs``), so it is part of the bundle."""

    about: ClassVar[str] = "the final refit on all rows and what the bundle records"

    random_state: int = setting("sampling.random_state")
    nodata: float | None = setting("embedding.nodata")
    n_jobs: int = setting("n_jobs")


@dataclass(frozen=True)
class PredictSettings(StageSettings):
    about: ClassVar[str] = "block-wise prediction, the extra output layers, a tile collection's mosaics"

    block_size: int | None = setting("prediction.block_size")
    memory_mb: int = setting("prediction.memory_mb")
    confidence: bool = setting("prediction.confidence")
    engine: str = setting("prediction.engine")
    probabilities: bool = setting("prediction.probabilities")
    margin: bool = setting("prediction.margin")
    entropy: bool = setting("prediction.entropy")
    unclassified_below: float | None = setting("prediction.unclassified_below")
    unclassified_value: int | None = setting("prediction.unclassified_value")
    n_jobs: int = setting("prediction.n_jobs", "n_jobs", derive=_first_set, runtime=True)
    mosaic: Literal["none", "vrt", "cog"] = setting("prediction.mosaic")
    mosaic_crs: str | None = setting("prediction.mosaic_crs")
    year: int | None = setting("embedding.year", "embedding.train_year", derive=_first_set)

    #: the fields a tile's own map does not depend on (only the mosaics and the STAC catalog do)
    collection_only: ClassVar[tuple[str, ...]] = ("mosaic", "mosaic_crs", "year")


@dataclass(frozen=True)
class NoSettings(StageSettings):
    about: ClassVar[str] = "none: the stage depends on its inputs only"


@dataclass(frozen=True)
class ReportSettings(StageSettings):
    about: ClassVar[str] = "what the reference can and cannot measure (its kind and file name)"

    kind: Literal["raster", "points"] = setting("reference.kind", "reference.path", derive=resolve_reference_kind)
    reference_name: str = setting("reference.path", derive=_file_name)


@dataclass(frozen=True)
class AoaSettings(StageSettings):
    """The CV folds are rebuilt as the tuning made them (``tuning.cv``, ``sampling.random_state``; their
    strategy and block size come from the training table's ``spatial_blocks.json``)."""

    about: ClassVar[str] = "whether the area of applicability is computed, the folds of its threshold, the windows"

    enabled: bool = setting("aoa.enabled")
    cv: int = setting("tuning.cv")
    random_state: int = setting("sampling.random_state")
    block_size: int | None = setting("prediction.block_size")
    memory_mb: int = setting("prediction.memory_mb")
