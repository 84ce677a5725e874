"""The run configuration: one frozen, validated model made of per-stage sections.

Key names are the public contract (see README). Every notebook parameter has a name here and the notebook's
default. Unknown keys are rejected with the closest valid key suggested; relative paths resolve against the
folder of the config file. Load with :func:`load_config` (YAML or TOML) or build in code with
``RunConfig.model_validate(dict, context={"base_dir": folder})``.
"""

from __future__ import annotations

import difflib
import json
import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from lcmodel.config_embedding import ChangeConfig, EmbeddingConfig
from lcmodel.config_grid import DEFAULT_STAGES, TUNABLE_PARAMS, GridValue, check_grid_value
from lcmodel.config_paths import (
    POINT_SUFFIXES,
    OptionalCrs,
    PathSpec,
    ResolvedPath,
    resolve_reference_kind,
    spec_text,
)
from lcmodel.errors import ConfigError, InputFileError
from lcmodel.postprocess.config import PostprocessConfig
from lcmodel.years import mapped_years, reference_year

__all__ = [
    "RunConfig", "ConfigSection", "ReferenceConfig", "ClassesConfig", "EmbeddingConfig", "SamplingConfig",
    "TuningConfig", "PredictionConfig", "OutputConfig", "PostprocessConfig", "DEFAULT_STAGES",
    "TUNABLE_PARAMS", "load_config", "config_from_dict", "flatten_config", "resolve_reference_kind",
    "POINT_SUFFIXES", "PathSpec", "spec_text", "GridValue", "AoaConfig", "ChangeConfig"
]


class ConfigSection(BaseModel):
    """A config section: unknown keys are refused, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ReferenceConfig(ConfigSection):
    """Reference land cover: class raster(s) (e.g. ESA WorldCover tiles) or a file of labelled points."""

    path: PathSpec
    kind: Literal["auto", "raster", "points"] = "auto"
    n_points: int = Field(10000, gt=0, description="raster: points drawn (the notebook's n_esa_sample)")
    nodata: float | None = None
    x_column: str = "lon"
    y_column: str = "lat"
    label_column: str = "label"
    crs: str = "EPSG:4326"
    layer: str | StrictInt | None = Field(None, description="vector points: a layer name or 0-based index")
    extra_points: tuple[ResolvedPath, ...] = Field((), description="raster reference: labelled point files (CSV "
                                                   "or vector) added to the TRAINING part only")

    @field_validator("crs")
    @classmethod
    def _crs_parses(cls, value: str) -> str:
        from pyproj import CRS
        from pyproj.exceptions import CRSError

        try:
            CRS.from_user_input(value)
        except CRSError as exc:
            raise ValueError(
                f"{value!r} is not a CRS pyproj understands; give e.g. 'EPSG:4326' or a WKT string"
            ) from exc
        return value


class ClassesConfig(ConfigSection):
    """Optional code -> value class table (CSV); extra columns are allowed in the file."""

    table: ResolvedPath | None = None
    code_column: str = "code"
    value_column: str = "value"
    name_column: str | None = None
    color_column: str | None = None


class SamplingConfig(ConfigSection):
    """Turning reference points into the modelling table (the notebook's section 3)."""

    n_sample: int = Field(5000, gt=0)
    min_class_fraction: float = Field(0.01, ge=0, lt=1)
    test_size: float = Field(0.2, gt=0, lt=1)
    dedupe_pixels: bool = True
    random_state: int = Field(42, ge=0, le=2**32 - 1, description="seed of every draw (numpy and scikit-learn "
                              "take 0 .. 2**32 - 1)")
    split: Literal["auto", "random", "spatial"] = Field(
        "auto", description="auto: spatial for a raster reference or >= 500 points, else random"
    )
    block_size: float | None = Field(
        None, gt=0, description="spatial block side in embedding CRS units; null = from the label variogram"
    )
    split_tolerance: float = Field(0.05, gt=0, lt=1, description="allowed deviation of the test part's overall and "
                                   "per-class shares from test_size (0.2 +/- 0.05); the report says where it is missed")
    purity_window: Literal[3, 5] | None = Field(None, description="raster reference: train only on points whose "
                                                "window holds one class; null = off")
    purity_test: bool = Field(False, description="filter the test part by purity too (default: it is not)")


class TuningConfig(ConfigSection):
    """Random-forest tuning: staged grids (the notebook's method), successive halving or Optuna.

    ``score_on`` is how grid and halving score a candidate: ``cv`` (stratified folds, GridSearchCV's scores)
    or ``oob`` (one fit on the training part, scored on its out-of-bag predictions; label scorers only).
    """

    method: Literal["grid", "halving", "optuna"] = "grid"
    score_on: Literal["cv", "oob"] = "cv"
    halving_factor: int = Field(
        3, ge=2, description="halving: keep 1/factor candidates, factor x rows per round"
    )
    cv: int = Field(5, ge=2)
    scoring: str = "f1_macro"
    stages: tuple[dict[str, tuple[GridValue, ...]], ...] = Field(
        default_factory=lambda: tuple({k: tuple(v) for k, v in s.items()} for s in DEFAULT_STAGES)
    )
    n_trials: int = Field(50, ge=1)
    timeout_s: float | None = Field(None, gt=0)
    cv_strategy: Literal["auto", "random", "spatial"] = Field(
        "auto", description="auto: spatial for a raster reference or >= 500 points, else random"
    )

    @field_validator("stages")
    @classmethod
    def _stages_valid(
        cls, stages: tuple[dict[str, tuple[GridValue, ...]], ...]
    ) -> tuple[dict[str, tuple[GridValue, ...]], ...]:
        if not stages:
            raise ValueError("at least one stage is needed, e.g. [{max_features: [sqrt]}]")
        out = []
        for stage in stages:
            checked: dict[str, tuple[GridValue, ...]] = {}
            for param, values in stage.items():
                if param not in TUNABLE_PARAMS:
                    close = difflib.get_close_matches(param, sorted(TUNABLE_PARAMS), n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise ValueError(
                        f"{param!r} is not a tunable RandomForest parameter{hint} "
                        f"(tunable: {', '.join(sorted(TUNABLE_PARAMS))})"
                    )
                if not values:
                    raise ValueError(f"{param} has an empty candidate list; give at least one value")
                checked[param] = tuple(check_grid_value(param, v) for v in values)
            out.append(checked)
        return tuple(out)

    @field_validator("scoring")
    @classmethod
    def _scoring_known(cls, value: str) -> str:
        from sklearn.metrics import get_scorer_names

        names = get_scorer_names()
        if value not in names:
            close = difflib.get_close_matches(value, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"scoring {value!r} is not a scikit-learn scorer{hint}")
        return value

    @model_validator(mode="after")
    def _oob_fits_method(self) -> TuningConfig:
        if self.score_on == "oob" and self.method == "optuna":
            raise ValueError(
                "score_on 'oob' works with method 'grid' or 'halving'; Optuna prunes across CV folds, "
                "so set score_on: cv or method: halving"
            )
        return self


class PredictionConfig(ConfigSection):
    """Block-wise prediction of the whole embedding raster."""

    block_size: int | None = Field(None, ge=16, description="pixels per block side; null = from memory")
    confidence: bool = True
    n_jobs: int | None = Field(
        None, ge=1, description="parallel workers (threads for a random forest, else processes); null = "
        "top-level n_jobs"
    )
    engine: Literal["auto", "sklearn"] = Field(
        "auto", description="auto: a random forest runs on lcmodel's compiled forest when that is faster (same "
        "bits); "
        "sklearn: the estimator's own predict_proba"
    )
    memory_mb: int = Field(1024, ge=64, description="memory budget per worker for the automatic block size")
    probabilities: bool = Field(False, description="also write probabilities.tif (one band per class, 0..100)")
    margin: bool = Field(False, description="also write margin.tif (top-1 minus top-2 probability, 0..100)")
    entropy: bool = Field(False, description="also write entropy.tif (normalised entropy, 0..100)")
    unclassified_below: float | None = Field(
        None, ge=0, le=100, description="top probability (%) under which a pixel is 'unclassified'"
    )
    unclassified_value: int | None = Field(
        None, ge=0, description="reserved map value of 'unclassified'; null = the map dtype's maximum"
    )
    temporal_filter: Literal["majority"] | None = Field(
        None, description="with three or more embedding.years: majority removes one-year flips (A-B-A -> A-A-A) "
        "into map_filtered_<year>.tif")
    mosaic: Literal["none", "vrt", "cog"] = Field("vrt", description="tiles' mosaic: vrt per CRS, cog: + one COG")
    mosaic_crs: OptionalCrs = Field(None, description="CRS of the COG mosaic; null = the collection's CRS")


class AoaConfig(ConfigSection):
    """The area of applicability (Meyer & Pebesma 2021): di.tif and aoa.tif beside the map."""

    enabled: bool = Field(True, description="write di.tif / aoa.tif and report the map's share outside the AOA")


class OutputConfig(ConfigSection):
    dir: ResolvedPath = Field(Path("results/run"), validate_default=True)


class RunConfig(ConfigSection):
    """A whole run: reference -> classes -> embedding -> sampling -> tuning -> prediction.

    The library's settings only: the orchestration layer (flows/config.py) extends it with ``tracking`` and
    the flow-only prediction settings (task runner, Dask cluster).
    """

    reference: ReferenceConfig
    classes: ClassesConfig = ClassesConfig()
    embedding: EmbeddingConfig
    sampling: SamplingConfig = SamplingConfig()
    tuning: TuningConfig = TuningConfig()
    prediction: PredictionConfig = PredictionConfig()
    aoa: AoaConfig = AoaConfig()
    postprocess: PostprocessConfig = PostprocessConfig()
    change: ChangeConfig = ChangeConfig()
    output: OutputConfig
    n_jobs: int = Field(2, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _default_output(cls, data: Any) -> Any:
        # validated (not a default instance) so that output.dir resolves against the config folder
        if isinstance(data, dict) and "output" not in data:
            data = {**data, "output": {}}
        return data

    @model_validator(mode="after")
    def _train_year(self) -> RunConfig:
        e = self.embedding
        if e.years is None or e.year is not None:
            return self
        found = reference_year(self.reference.path)
        if found is None:
            raise ConfigError(f"embedding.years {list(e.years)} is set but the year the reference describes is "
                              "not in its file name; set embedding.train_year (the year the model is trained on)")
        year, name = found
        if year not in e.years:
            raise ConfigError(f"the reference's year {year} (from {name!r}) is not among embedding.years "
                              f"{list(e.years)}; add it to embedding.years or set embedding.train_year")
        object.__setattr__(e, "year", year)
        object.__setattr__(e, "train_year", year)
        return self

    @property
    def mapped_years(self) -> tuple[int, ...]:
        """Every year mapped: ``embedding.years`` and the train year; () for a one-year run."""
        return mapped_years(self.embedding.years, self.embedding.year)

    def for_year(self, year: int, output_dir: Path | None = None) -> RunConfig:
        """This config for another year's embedding (its path's ``{year}``, an index's year), same settings."""
        embedding = self.embedding.model_copy(update={"year": year, "train_year": year})
        update: dict[str, Any] = {"embedding": embedding}
        if output_dir is not None:
            update["output"] = self.output.model_copy(update={"dir": Path(output_dir)})
        return self.model_copy(update=update)

    @property
    def n_sample_effective(self) -> int:
        """The notebook reduces n_sample to n_points when sampling a raster and n_sample is larger."""
        if self.reference_kind == "raster":
            return min(self.sampling.n_sample, self.reference.n_points)
        return self.sampling.n_sample

    @property
    def reference_kind(self) -> Literal["raster", "points"]:
        return resolve_reference_kind(self.reference.kind, self.reference.path)


def _model_at(loc: tuple[int | str, ...], root: type[BaseModel]) -> type[BaseModel] | None:
    """The pydantic model class that owns the last element of an error location."""
    model: type[BaseModel] | None = root
    for part in loc[:-1]:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return None
        ann = model.model_fields[part].annotation
        args = getattr(ann, "__args__", ())
        candidates = [ann, *args]
        model = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
    return model


def _format_error(err: Any, root: type[BaseModel]) -> str:
    loc = tuple(err["loc"])
    where = ".".join(str(p) for p in loc) or "config"
    if err["type"] == "extra_forbidden":
        model = _model_at(loc, root)
        valid = sorted(model.model_fields) if model is not None else []
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown config key {where!r}{hint} (valid keys here: {', '.join(valid)})"
    if err["type"] == "missing":
        return f"config key {where!r} is required but missing; add it to the config file"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if not loc:  # a check across sections names its keys itself
        return msg
    value = err.get("input")
    shown = "" if isinstance(value, dict | list) else f" (got {value!r})"
    return f"config key {where!r}: {msg}{shown}"


_C = TypeVar("_C", bound="RunConfig")


def config_from_dict(data: dict[str, Any], base_dir: Path | str | None = None,
                     model: type[_C] = RunConfig) -> _C:  # type: ignore[assignment]
    """Validate a plain dict as a :class:`RunConfig` (or ``model``, a subclass); paths resolve against ``base_dir``."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"the config must be a mapping of sections (reference, embedding, ...), got {type(data).__name__}"
        )
    try:
        return model.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        errors = exc.errors()
        first = _format_error(errors[0], model)
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise ConfigError(first + more) from None


def load_config(path: Path | str, model: type[_C] = RunConfig) -> _C:  # type: ignore[assignment]
    """Read a YAML (.yaml/.yml) or TOML (.toml) run configuration and validate it (as ``model``)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"config file {str(path)!r} does not exist; check the path")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} on line "
                          f"{line}); save it as UTF-8") from None
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        else:
            data = yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        detail = str(exc).replace("\n", " ")
        raise ConfigError(f"config file {str(path)!r} is not valid YAML/TOML: {detail}") from None
    if data is None:
        raise ConfigError(f"config file {str(path)!r} is empty; it needs at least reference and embedding")
    return config_from_dict(data, base_dir=path.resolve().parent, model=model)


def flatten_config(cfg: RunConfig) -> dict[str, str]:
    """The config as flat ``section.key -> string`` pairs (for tracking params)."""
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, list | tuple) and value and all(isinstance(v, dict) for v in value):
            for i, v in enumerate(value):
                walk(f"{prefix}.{i}", v)
        else:
            out[prefix] = value if isinstance(value, str) else json.dumps(value)

    walk("", cfg.model_dump(mode="json"))
    return out
