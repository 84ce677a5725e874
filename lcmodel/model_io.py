"""The model bundle: a fitted estimator plus everything needed to apply it safely.

``model.skops`` holds the estimator together with the band names, the 1-based source indexes of those
bands (``band_indexes``: the bands used, :mod:`lcmodel.bands`; absent in older bundles, meaning every band)
and the CRS of the embedding it was trained on, the embedding's :class:`~lcmodel.embedding.NodataRule`, the
class table, the run config, the training table's hash, library versions and headline metrics. Prediction
checks a raster against the bundle (:func:`lcmodel.compatibility.check_compatible`) before touching any
block, so a model is never applied to bands it was not trained on, and reads only the bands it uses.

On disk (:mod:`lcmodel.model_format`) the bundle is a zip: the metadata as JSON (``lcmodel.json``) and the
estimator in skops's layout, which loads from JSON and arrays without unpickling anything, after every type it
names was found in an explicit trusted list. The bytes hold no timestamp: the same fit gives the same file. The
format version is checked before anything is rebuilt. A side file ``<path>.json`` carries the same metadata in
readable form plus ``created`` and the file's SHA-256 (for people; loading does not rely on it). A registered
model is checked against the SHA-256 the tracking store recorded at training (``expected_sha256``).

Feature names: the estimator may be fitted on a bare array (no ``feature_names_in_``) or on a
DataFrame whose columns are exactly ``band_names``; both are accepted. Prediction passes named
features only to an estimator fitted with names, so scikit-learn never warns "X does not have valid
feature names".
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import re
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import sklearn

from lcmodel.classes import ClassTable, integer_valued
from lcmodel.embedding import NodataRule
from lcmodel.errors import InputFileError, LcmodelWarning, ModelBundleError
from lcmodel.io import atomic_path, sha256_file
from lcmodel.model_format import bundle_bytes, describe_estimator, is_pickle, load_estimator, read_bundle
from lcmodel.model_legacy import load_pickled

__all__ = [
    "BUNDLE_FORMAT",
    "ModelBundle",
    "current_versions",
    "save_bundle",
    "load_bundle",
    "side_file_path",
    "verify_bundle_hash",
]

logger = logging.getLogger(__name__)

#: Version of the on-disk layout. Bump it when the payload changes incompatibly (1: the joblib pickle).
BUNDLE_FORMAT = 2
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]+://")


@dataclass
class ModelBundle:
    """A fitted classifier and the facts needed to apply it to an embedding raster.

    Attributes
    ----------
    estimator : fitted scikit-learn classifier; ``classes_`` are the integer class values. Fitted on
        a bare array, or on a DataFrame whose columns are ``band_names``.
    band_names : names of the features, in order (the raster's band descriptions, else
        band_<index>).
    crs_wkt : CRS of the embedding raster it was trained on (WKT), or None.
    nodata_rule : how the training raster's pixels were judged valid and turned into features.
    class_table : reference codes -> class values, names and colours.
    config : the run config (``RunConfig.model_dump(mode="json")``), may be empty.
    training_table_sha256 : SHA-256 of the training table it was fitted on, or None.
    versions : versions of lcmodel, sklearn, numpy, rasterio and python at training time.
    created : ISO 8601 UTC timestamp of the bundle (kept in the side file, not in the bundle's bytes; "" when
        the side file is missing or describes another file).
    metrics : small headline test metrics (overall accuracy, kappa, ...).
    band_indexes : 1-based index in the training raster of each band of ``band_names`` (the bands
        prediction reads); empty = every band, 1..n (bundles written before band selection).
    n_source_bands : bands of the training raster; 0 = ``max(band_indexes)`` (every band when
        ``band_indexes`` is empty).
    format_version : on-disk format version (:data:`BUNDLE_FORMAT`).
    band_stats : per-band statistics of the training features (:func:`lcmodel.band_stats.training_band_stats`),
        checked against the embedding before prediction; None in bundles written before them.
    """

    estimator: Any
    band_names: list[str]
    crs_wkt: str | None
    nodata_rule: NodataRule
    class_table: ClassTable
    config: dict[str, Any]
    training_table_sha256: str | None
    versions: dict[str, str]
    created: str
    metrics: dict[str, Any] = field(default_factory=dict)
    band_indexes: list[int] = field(default_factory=list)
    n_source_bands: int = 0
    format_version: int = BUNDLE_FORMAT
    band_stats: dict[str, Any] | None = None
    #: SHA-256 of the file the bundle was loaded from or saved to (None for a bundle made in memory);
    #: not part of the metadata. Prediction uses it to recognise its own unfinished work (resume).
    source_sha256: str | None = field(default=None, compare=False)

    @property
    def source_indexes(self) -> list[int]:
        """The 1-based raster band of each feature: ``band_indexes``, or 1..n when it is empty."""
        return [int(i) for i in self.band_indexes] or list(range(1, self.n_bands + 1))

    @property
    def source_band_count(self) -> int:
        """Bands of the training raster: ``n_source_bands``, or the largest index used when it is 0."""
        return int(self.n_source_bands) or max(self.source_indexes, default=0)

    @property
    def uses_all_bands(self) -> bool:
        """The model reads every band of its raster, in order."""
        return self.source_indexes == list(range(1, self.source_band_count + 1))

    @property
    def n_bands(self) -> int:
        """Number of features (bands) the estimator expects."""
        return len(self.band_names)

    @property
    def class_values(self) -> list[int]:
        """The class values the estimator predicts (``estimator.classes_`` as ints)."""
        return _class_values(self.estimator)

    def metadata(self, *, with_created: bool = True) -> dict[str, Any]:
        """Everything but the estimator, JSON-friendly (the side file; the bundle file's without ``created``)."""
        meta = {
            "format_version": self.format_version,
            "band_names": list(self.band_names),
            "band_indexes": self.source_indexes,
            "n_source_bands": self.source_band_count,
            "crs_wkt": self.crs_wkt,
            "nodata_rule": self.nodata_rule.to_dict(),
            "class_table": self.class_table.to_dict(),
            "config": self.config,
            "training_table_sha256": self.training_table_sha256,
            "versions": dict(self.versions),
            "created": self.created,
            "metrics": self.metrics,
            "estimator": describe_estimator(self.estimator),
            "band_stats": self.band_stats,
        }
        if not with_created:
            del meta["created"]
        return meta


def current_versions() -> dict[str, str]:
    """Versions of the libraries that decide how a model is fitted and applied.

    Returns
    -------
    dict
        ``lcmodel``, ``sklearn``, ``numpy``, ``rasterio``, ``gdal`` and ``python`` version strings.
    """
    from lcmodel import __version__

    return {
        "lcmodel": __version__,
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "rasterio": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
        "python": platform.python_version(),
    }


def utc_now() -> str:
    """The current time as an ISO 8601 UTC timestamp (seconds), for :attr:`ModelBundle.created`."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def side_file_path(path: Path | str) -> Path:
    """The readable side file of a bundle: ``<path>.json`` (``model.skops.json``)."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def save_bundle(bundle: ModelBundle, path: Path | str) -> Path:
    """Write a bundle atomically (:mod:`lcmodel.model_format`) plus its readable side file ``<path>.json``.

    The file's bytes depend only on the estimator and the metadata (no timestamp): the same fit gives the
    same bytes. ``created`` goes to the side file only.

    Parameters
    ----------
    bundle : the bundle to write.
    path : destination, conventionally ``model.skops``.

    Returns
    -------
    Path
        ``path``. The side file holds the metadata, ``created``, and ``sha256``, the bundle file's SHA-256
        (for reading; loading does not trust it).

    Raises
    ------
    ModelBundleError
        The bundle is inconsistent (estimator not fitted, feature count or names differ from
        band_names, non-integer classes) or holds an estimator type lcmodel does not load.
    OutputError
        The file cannot be written.
    """
    path = Path(path)
    _validate(bundle, str(path))
    data = bundle_bytes(bundle.estimator, bundle.metadata(with_created=False))
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    bundle.source_sha256 = digest
    side = dict(bundle.metadata(), file=path.name, sha256=digest)
    with atomic_path(side_file_path(path)) as tmp:
        tmp.write_text(json.dumps(side, indent=2, default=str) + "\n", encoding="utf-8")
    logger.info("model bundle written to %s", path)
    return path


def load_bundle(path: Path | str, *, trust: bool = False, expected_sha256: str | None = None) -> ModelBundle:
    """Read a bundle written by :func:`save_bundle`; nothing from the file runs.

    The estimator is rebuilt from JSON and arrays by skops, after every type the file names was found in
    :data:`lcmodel.model_format.TRUSTED_TYPES`. A pickle (a bundle written by an older lcmodel) is refused
    unless ``trust=True`` (CLI ``--trust-model``), which loads it once as a pickle: loading a pickle runs
    code from the file, so only for a file you made yourself. Only local files are read: a URL is refused,
    never downloaded.

    Parameters
    ----------
    path : the ``model.skops`` file (a local path).
    trust : load an old pickled bundle (runs code from the file).
    expected_sha256 : the SHA-256 recorded when the bundle was made (e.g. the tracking store's
        ``bundle.sha256``); a file with another digest is refused before anything is read from it.

    Returns
    -------
    ModelBundle

    Raises
    ------
    InputFileError
        The file does not exist.
    ModelBundleError
        The path is a URL; the digest differs from ``expected_sha256``; the file is a pickle (and ``trust``
        is False), not a bundle, names an untrusted type, was written by another bundle format version, or
        is inconsistent.

    Warns
    -----
    LcmodelWarning
        The bundle was trained with another scikit-learn version than the one installed.
    """
    if _URL.match(str(path)):
        raise ModelBundleError(
            f"model bundle {str(path)!r} is a URL; lcmodel loads bundles only from local files: "
            "download it yourself, check it, and give the local path"
        )
    path = Path(path)
    if not path.is_file():
        raise InputFileError(
            f"model bundle {str(path)!r} does not exist; check the path or run `lcmodel train`"
        )
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None:
        _check_digest(path, digest, expected_sha256)
    with warnings.catch_warnings():
        # sklearn's InconsistentVersionWarning (one per tree): one warning below
        warnings.filterwarnings("ignore", message=r"Trying to unpickle estimator", category=UserWarning)
        if is_pickle(data[:4]):
            if not trust:
                raise ModelBundleError(
                    f"model bundle {str(path)!r} is a pickle written by an older lcmodel (loading it would run "
                    "code from the file); retrain with `lcmodel train`, or pass --trust-model to load it once "
                    "as a pickle if you made it yourself"
                )
            estimator, meta = load_pickled(path)
        else:
            meta, schema, entries = read_bundle(path, data)
            _check_format(path, meta.get("format_version"))
            estimator = load_estimator(path, entries, schema)
    bundle = _from_metadata(path, estimator, meta)
    _validate(bundle, str(path))
    bundle.source_sha256 = digest
    if not bundle.created:
        bundle.created = _side_created(path, digest)
    trained = bundle.versions.get("sklearn")
    if trained and trained != sklearn.__version__:
        warnings.warn(
            f"model bundle {str(path)!r} was trained with scikit-learn {trained}, this is "
            f"{sklearn.__version__}; predictions may differ: retrain with `lcmodel train` or "
            f"install scikit-learn=={trained}",
            LcmodelWarning,
            stacklevel=2,
        )
    return bundle


def verify_bundle_hash(path: Path | str, expected_sha256: str) -> str:
    """The SHA-256 of a bundle file, checked against the one recorded when it was made.

    Raises
    ------
    ModelBundleError
        The file's SHA-256 differs from ``expected_sha256``.
    """
    return _check_digest(Path(path), sha256_file(path), expected_sha256)


def _check_digest(path: Path, digest: str, expected: str) -> str:
    if digest != expected:
        raise ModelBundleError(
            f"model bundle {str(path)!r} has SHA-256 {digest}, but {expected} was recorded when it was "
            "trained: the file was replaced or changed since; retrain, or register the model again"
        )
    return digest


def _check_format(path: Path, version: Any) -> None:
    if version != BUNDLE_FORMAT:
        raise ModelBundleError(
            f"model bundle {str(path)!r} has format version {version!r}, this lcmodel reads "
            f"version {BUNDLE_FORMAT}; retrain with `lcmodel train` or use the lcmodel version "
            "that wrote it"
        )


def _from_metadata(path: Path, estimator: Any, meta: dict[str, Any]) -> ModelBundle:
    """A :class:`ModelBundle` from the metadata JSON (unknown keys are ignored)."""
    try:
        return ModelBundle(
            estimator=estimator,
            band_names=[str(b) for b in meta["band_names"]],
            crs_wkt=meta.get("crs_wkt"),
            nodata_rule=NodataRule.from_dict(meta["nodata_rule"]),
            class_table=ClassTable.from_dict(meta["class_table"]),
            config=dict(meta.get("config") or {}),
            training_table_sha256=meta.get("training_table_sha256"),
            versions=dict(meta.get("versions") or {}),
            created=str(meta.get("created", "")),
            metrics=dict(meta.get("metrics") or {}),
            # absent in bundles written before band selection: every band, 1..n
            band_indexes=[int(i) for i in meta.get("band_indexes") or []],
            n_source_bands=int(meta.get("n_source_bands") or 0),
            format_version=BUNDLE_FORMAT,
            band_stats=meta.get("band_stats"),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelBundleError(
            f"model bundle {str(path)!r} is incomplete (missing or bad {exc}); retrain with "
            "`lcmodel train`"
        ) from None


def _side_created(path: Path, digest: str) -> str:
    """``created`` from the side file, when the side file describes this very file; else ""."""
    try:
        side = json.loads(side_file_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return str(side.get("created", "")) if isinstance(side, dict) and side.get("sha256") == digest else ""


def _class_values(estimator: Any) -> list[int]:
    classes = np.asarray(estimator.classes_)
    if not integer_valued(classes):
        raise ModelBundleError(
            f"estimator classes {classes[:5].tolist()} are not integer class values; fit the "
            "model on the training table's integer 'value' column"
        )
    return [int(v) for v in classes]


def _validate(bundle: ModelBundle, where: str) -> None:
    """Consistency of a bundle: fitted classifier, feature count and names, integer classes."""
    est = bundle.estimator
    if not hasattr(est, "predict_proba") or not hasattr(est, "classes_"):
        raise ModelBundleError(
            f"model bundle {where!r}: the estimator ({type(est).__name__}) is not a fitted "
            "classifier with predict_proba; fit it before saving"
        )
    n_in = getattr(est, "n_features_in_", None)
    if n_in is not None and int(n_in) != bundle.n_bands:
        raise ModelBundleError(
            f"model bundle {where!r}: the estimator expects {n_in} features but band_names lists "
            f"{bundle.n_bands}; give one band name per feature"
        )
    idx, n_source = bundle.source_indexes, bundle.source_band_count
    if len(idx) != bundle.n_bands or len(set(idx)) != len(idx) or not all(1 <= i <= n_source for i in idx):
        raise ModelBundleError(
            f"model bundle {where!r}: band_indexes {idx[:5]}... must give one distinct 1-based index "
            f"(at most n_source_bands={n_source}) per band of band_names ({bundle.n_bands}); "
            "record the source index of each band used"
        )
    names = getattr(est, "feature_names_in_", None)
    if names is not None and [str(n) for n in names] != list(bundle.band_names):
        raise ModelBundleError(
            f"model bundle {where!r}: the estimator was fitted on columns {list(names)[:3]}... "
            f"but band_names are {bundle.band_names[:3]}...; fit on the training table's band "
            "columns, in order"
        )
    _class_values(est)
