"""What the stages pass to each other: files named by path AND content digest.

An :class:`Artifact` is one file with the SHA-256 of its content, taken when it was written (or, for the
user's input files, when the run started). A stage's outputs are a frozen dataclass of artifacts (a
subclass of :class:`Artifacts`), so the next stage's cache key can hash what it consumes without reading it
again, and a cached result can be checked against what was recorded: :meth:`Artifacts.verify` re-hashes the
files and says which one changed.

User inputs (the reference, the embedding, the class table) are :class:`Source` artifacts: their digest is
taken from their content once per process and file state (path, size, mtime, inode), so a stage key never
trusts a name or a timestamp alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from lcmodel.io import file_digest

__all__ = [
    "Artifact",
    "Artifacts",
    "Source",
    "ReferenceSource",
    "EmbeddingSource",
    "ClassTableSource",
    "ExtraPointsSource",
    "file_digest",
    "artifact",
    "digest_of",
    "PointsFile",
    "LabelledPoints",
    "Samples",
    "TrainingTable",
    "Tuning",
    "Evaluation",
    "Model",
    "Prediction",
    "Quicklook",
    "Assessment",
    "Applicability",
    "Report",
]

_A = TypeVar("_A", bound="Artifacts")


@dataclass(frozen=True)
class Artifact:
    """One file and the SHA-256 of its content."""

    path: Path
    sha256: str

    @classmethod
    def of(cls, path: Path | str) -> Artifact:
        """The artifact of an existing file (hashes it)."""
        return cls(Path(path), file_digest(path))

    def problem(self) -> str | None:
        """None when the file still holds the recorded content, else what is wrong with it."""
        if not self.path.is_file():
            return f"{self.path.name} is missing"
        if file_digest(self.path) != self.sha256:
            return f"{self.path.name} changed since it was written"
        return None

    def to_dict(self) -> dict[str, str]:
        return {"path": str(self.path), "sha256": self.sha256}

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> Artifact:
        return cls(Path(data["path"]), str(data["sha256"]))


def artifact(path: Path | str | None) -> Artifact | None:
    """:meth:`Artifact.of`, passing None through (an optional output that was not written)."""
    return None if path is None else Artifact.of(path)


@dataclass(frozen=True)
class Artifacts:
    """Base of a stage's typed outputs: fields are :class:`Artifact`, ``Artifact | None`` or tuples of them.

    Subclasses name what they hold; their field names are the artifact names shown in DESIGN.md.
    """

    #: A short description of what the artifact set is, for DESIGN.md's generated table.
    about: ClassVar[str] = ""

    def files(self) -> Iterator[tuple[str, Artifact]]:
        """Every file, with the field it belongs to (tuple members as ``name[i]``)."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Artifact):
                yield f.name, value
            elif isinstance(value, tuple):
                for i, item in enumerate(value):
                    yield f"{f.name}[{i}]", item

    def digest(self) -> str:
        """One digest of every file's name and content digest (what a downstream cache key hashes)."""
        listing = [(name, art.path.name, art.sha256) for name, art in self.files()]
        return hashlib.sha256(json.dumps([type(self).__name__, listing]).encode()).hexdigest()

    def problems(self) -> list[str]:
        """What no longer matches the recorded digests (empty when every file is as it was written)."""
        return [p for _, art in self.files() if (p := art.problem()) is not None]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Artifact):
                out[f.name] = value.to_dict()
            elif isinstance(value, tuple):
                out[f.name] = [v.to_dict() for v in value]
            else:
                out[f.name] = value
        return out

    @classmethod
    def from_dict(cls: type[_A], data: Mapping[str, Any]) -> _A:
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            value = data.get(f.name)
            if isinstance(value, Mapping):
                kwargs[f.name] = Artifact.from_dict(value)
            elif isinstance(value, list):
                kwargs[f.name] = tuple(Artifact.from_dict(v) for v in value)
            else:
                kwargs[f.name] = value
        return cls(**kwargs)


@dataclass(frozen=True)
class Source(Artifacts):
    """A user's input file, named in the config; its digest is that of its content."""

    #: the config key that names the file
    config_key: ClassVar[str] = ""
    #: every config key the file's content depends on (the key itself, and e.g. the AOI that selects tiles)
    config_keys: ClassVar[tuple[str, ...]] = ()

    file: Artifact

    @property
    def path(self) -> Path:
        return self.file.path

    @classmethod
    def at(cls: type[_A], path: Path | str) -> _A:
        return cls(Artifact.of(path))  # type: ignore[call-arg]


@dataclass(frozen=True)
class ReferenceSource(Source):
    """``companions``: the files beside ``file`` that hold part of its content (a shapefile's ``.dbf``,
    ``.shx``, ``.prj``, ``.cpg``), so that the digest covers the whole dataset, not just its ``.shp``."""

    about: ClassVar[str] = "the reference file: a class raster (several tiles: a VRT mosaic of them) or " \
        "labelled points (a shapefile with its sidecars)"
    config_key: ClassVar[str] = "reference.path"

    companions: tuple[Artifact, ...] = ()

    @classmethod
    def at(cls: type[_A], path: Path | str) -> _A:
        from lcmodel.reference.vector import companion_files

        return cls(Artifact.of(path), tuple(Artifact.of(p) for p in companion_files(path)))  # type: ignore[call-arg]


@dataclass(frozen=True)
class EmbeddingSource(Source):
    about: ClassVar[str] = "the embedding tiles: the manifest `.lcmodel/inputs/embedding.json` of what " \
        "`embedding.path` names (each tile's grid, bands and content digest)"
    config_key: ClassVar[str] = "embedding.path"
    config_keys: ClassVar[tuple[str, ...]] = ("embedding.path", "embedding.aoi", "embedding.year",
                                              "embedding.train_year")


@dataclass(frozen=True)
class ClassTableSource(Source):
    about: ClassVar[str] = "the code -> value class table, when given"
    config_key: ClassVar[str] = "classes.table"


@dataclass(frozen=True)
class ExtraPointsSource(Source):
    """``file`` is the first file of ``reference.extra_points``, ``more`` the others in the configured order,
    ``companions`` a shapefile's side files, so the digest covers the content of every file."""

    about: ClassVar[str] = "the labelled point files of `reference.extra_points`, when given (training part only)"
    config_key: ClassVar[str] = "reference.extra_points"

    more: tuple[Artifact, ...] = ()
    companions: tuple[Artifact, ...] = ()

    @property
    def paths(self) -> tuple[Path, ...]:
        """The point files, in the configured order."""
        return (self.file.path, *(a.path for a in self.more))

    @classmethod
    def of(cls, paths: tuple[Path, ...] | list[Path]) -> ExtraPointsSource:
        from lcmodel.reference.vector import companion_files

        return cls(Artifact.of(paths[0]), tuple(Artifact.of(p) for p in paths[1:]),
                   tuple(Artifact.of(c) for p in paths for c in companion_files(p)))


def digest_of(value: Any) -> str:
    """SHA-256 of a JSON-able value in canonical form (sorted keys, no whitespace)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=_default)
    return hashlib.sha256(text.encode()).hexdigest()


def _default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not part of a stage's settings")


# ------------------------------------------------------------------------------- what each stage writes
@dataclass(frozen=True)
class PointsFile(Artifacts):
    about: ClassVar[str] = "reference points in their own CRS (`reference_points.csv` + `.crs.json`)"

    points: Artifact
    crs: Artifact


@dataclass(frozen=True)
class LabelledPoints(Artifacts):
    about: ClassVar[str] = "points in the embedding CRS with class values; the class table the run settled on"

    points: Artifact
    crs: Artifact
    class_table: Artifact


@dataclass(frozen=True)
class Samples(Artifacts):
    about: ClassVar[str] = "embedding values at the points, one row per valid pixel (`samples.csv`), counts"

    samples: Artifact
    stats: Artifact


@dataclass(frozen=True)
class TrainingTable(Artifacts):
    about: ClassVar[str] = "`training_table.csv` (with the split) and the split / CV decisions (`spatial_blocks.json`)"

    table: Artifact
    blocks: Artifact


@dataclass(frozen=True)
class Tuning(Artifacts):
    about: ClassVar[str] = "best parameters, every candidate's CV scores, per-stage tables"

    best_params: Artifact
    summary: Artifact
    tables: tuple[Artifact, ...]


@dataclass(frozen=True)
class Evaluation(Artifacts):
    about: ClassVar[str] = "test-part metrics, test predictions, confusion matrix, band importances"

    metrics: Artifact
    test_predictions: Artifact
    classification_report: Artifact | None
    confusion_csv: Artifact
    confusion_png: Artifact
    importances_csv: Artifact
    importances_png: Artifact


@dataclass(frozen=True)
class Model(Artifacts):
    about: ClassVar[str] = ("the model bundle (`model.skops`: metadata JSON and the estimator as skops data, "
                            "deterministic) and its readable side file")

    bundle: Artifact
    side_file: Artifact


@dataclass(frozen=True)
class Prediction(Artifacts):
    """A tile collection's run also has the per-tile maps (in the collection's order), the other per-tile files
    (layers and summaries), the mosaics and the STAC catalog; ``map`` is then the main map (the COG mosaic,
    the VRT of the collection's CRS, or the first tile's map: :mod:`lcmodel.pipeline.tiled`)."""

    about: ClassVar[str] = "the map COG, its confidence and uncertainty COGs, the summary (`prediction.json`); " \
        "for a tile collection also `tiles/<stem>/`, the mosaics and `stac/`"

    map: Artifact
    summary: Artifact
    confidence: Artifact | None = None
    probabilities: Artifact | None = None
    margin: Artifact | None = None
    entropy: Artifact | None = None
    tile_maps: tuple[Artifact, ...] = ()
    tile_files: tuple[Artifact, ...] = ()
    mosaics: tuple[Artifact, ...] = ()
    stac: tuple[Artifact, ...] = ()


@dataclass(frozen=True)
class Quicklook(Artifacts):
    about: ClassVar[str] = "a PNG of the map in its class colours"

    png: Artifact


@dataclass(frozen=True)
class Assessment(Artifacts):
    about: ClassVar[str] = "area-adjusted accuracy and class areas (`accuracy_assessment.json`)"

    assessment: Artifact


@dataclass(frozen=True)
class Applicability(Artifacts):
    """A tile collection's run has ``di.tif`` / ``aoa.tif`` per tile instead (in the collection's order), and
    their VRT mosaics per CRS when the prediction wrote mosaics."""

    about: ClassVar[str] = "the area of applicability: `di.tif`, `aoa.tif` and the shares outside it (`aoa.json`); " \
        "for a tile collection `tiles/<stem>/di.tif` and `aoa.tif` and their VRTs per CRS"

    summary: Artifact
    di: Artifact | None = None
    aoa: Artifact | None = None
    tile_di: tuple[Artifact, ...] = ()
    tile_aoa: tuple[Artifact, ...] = ()
    mosaics: tuple[Artifact, ...] = ()


@dataclass(frozen=True)
class Report(Artifacts):
    about: ClassVar[str] = "`report.md`"

    report: Artifact
