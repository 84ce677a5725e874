"""The bundle file format: a zip that loads without unpickling anything, byte-identical for the same model.

A bundle file (``model.skops``) is a zip archive holding

- ``lcmodel.json``: the bundle's metadata (band names and indexes, CRS, nodata rule, class table, config,
  versions, metrics, ..., :meth:`lcmodel.model_io.ModelBundle.metadata`), plain JSON with sorted keys;
- the estimator in skops's layout (``schema.json`` plus one ``.npy`` array per entry), which
  :func:`skops.io.load` rebuilds from data: no pickle, no ``__reduce__`` of the file's choosing.

Why skops and not lcmodel's own arrays: skops already rebuilds scikit-learn forests and trees (including the
Cython ``Tree``) from JSON plus arrays and refuses types it was not told to trust; lcmodel's own arrays would
re-implement that for each estimator attribute. Two locks on top of skops: every type the schema names must be
in :data:`TRUSTED_TYPES` (an explicit list: the forests and trees lcmodel fits, their ``Tree``, builtins and
numpy arrays and scalars), and every node loader in :data:`_LOADERS`; anything else is refused in one line
before skops builds any object.

Deterministic: skops names its arrays after ``id()`` of the objects and stamps zip entries with the current
time. :func:`bundle_bytes` renumbers the ids in the order the schema lists them, names the arrays after that
number, sorts the entries and dates them 1980-01-01, so the same fitted estimator and metadata give the same
bytes (and SHA-256): a rerun of the same training reproduces the bundle, and prediction recognises its own
unfinished work by the bundle's digest.

Older lcmodel wrote a joblib pickle; :func:`is_pickle` recognises one (loading it runs code from the file).
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import skops.io as sio
import skops.io.exceptions as sio_exceptions

from lcmodel.errors import ModelBundleError

__all__ = ["METADATA_ENTRY", "TRUSTED_TYPES", "bundle_bytes", "describe_estimator", "is_pickle", "load_estimator",
           "read_bundle"]

#: the zip entry holding the bundle's metadata (JSON)
METADATA_ENTRY = "lcmodel.json"
_SCHEMA = "schema.json"
_EPOCH = (1980, 1, 1, 0, 0, 0)

#: every type a bundle's estimator may be made of; the schema naming any other type is refused
TRUSTED_TYPES: frozenset[str] = frozenset({
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.str", "builtins.int", "builtins.float",
    "builtins.bool", "builtins.NoneType",
    "numpy.ndarray", "numpy.dtype", "numpy.int8", "numpy.int16", "numpy.int32", "numpy.int64", "numpy.intp",
    "numpy.uint8", "numpy.uint16", "numpy.uint32", "numpy.uint64", "numpy.float32", "numpy.float64",
    "numpy.bool_", "numpy.random.mtrand.RandomState",
    "sklearn.ensemble._forest.RandomForestClassifier", "sklearn.ensemble._forest.ExtraTreesClassifier",
    "sklearn.tree._classes.DecisionTreeClassifier", "sklearn.tree._classes.ExtraTreeClassifier",
    "sklearn.tree._tree.Tree",
})
#: skops node loaders a forest needs (a function, method, partial or operator node is refused)
_LOADERS = frozenset({"ObjectNode", "DictNode", "ListNode", "TupleNode", "JsonNode", "NdArrayNode", "TypeNode",
                      "TreeNode", "DTypeNode", "RandomStateNode"})


def is_pickle(head: bytes) -> bool:
    """True for the first bytes of a pickle or a joblib pickle (plain or zlib-compressed)."""
    return head[:1] == b"\x80" or head[:2] in (b"x\x01", b"x^", b"x\x9c", b"x\xda") or head[:3] == b"ZF\x00"


def bundle_bytes(estimator: Any, metadata: dict[str, Any]) -> bytes:
    """The bundle file's bytes: the estimator (skops, renumbered) and the metadata, deterministic.

    Parameters
    ----------
    estimator : the fitted estimator (of :data:`TRUSTED_TYPES`).
    metadata : the bundle's metadata, JSON-friendly (written with sorted keys).

    Raises
    ------
    ModelBundleError
        The estimator holds a type outside :data:`TRUSTED_TYPES` (it could not be loaded back).
    """
    raw = zipfile.ZipFile(io.BytesIO(sio.dumps(estimator)))
    schema = json.loads(raw.read(_SCHEMA))
    _check_schema(schema, "the estimator to save")
    ids: dict[int, int] = {}
    files: dict[str, str] = {}
    _renumber(schema, ids, files)
    entries = {_SCHEMA: json.dumps(schema, sort_keys=True).encode()}
    entries.update({new: raw.read(old) for old, new in files.items()})
    entries[METADATA_ENTRY] = (json.dumps(metadata, sort_keys=True, indent=1, default=str) + "\n").encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, entries[name], compresslevel=6)
    return out.getvalue()


def read_bundle(path: Path, data: bytes) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """The metadata, the estimator's skops schema and its entries (an uncompressed zip) of a bundle file's bytes.

    Every entry is inflated once here, which checks it against its CRC (skops alone reads an array without
    reaching the end of its entry, so a damaged one could go unnoticed); nothing is built yet.

    Parameters
    ----------
    path : the file (for messages).
    data : its bytes.

    Raises
    ------
    ModelBundleError
        Not a bundle zip, an entry fails its CRC check (damaged), or no metadata or schema.
    """
    where = str(path)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = set(archive.namelist())
        if METADATA_ENTRY not in names or _SCHEMA not in names:
            raise ModelBundleError(
                f"{where!r} is a zip but not an lcmodel model bundle (no {METADATA_ENTRY} and {_SCHEMA}); "
                "give a model.skops written by `lcmodel train`")
        metadata = json.loads(archive.read(METADATA_ENTRY))
        schema = json.loads(archive.read(_SCHEMA))
        estimator = io.BytesIO()
        with zipfile.ZipFile(estimator, "w") as out:  # stored: skops reads it without inflating again
            for info in archive.infolist():
                if info.filename != METADATA_ENTRY:
                    out.writestr(info.filename, _read_entry(archive, info))
    except ModelBundleError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, KeyError, OSError, EOFError) as exc:
        raise ModelBundleError(
            f"model bundle {where!r} is not a readable bundle file ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); give a model.skops written by `lcmodel train`"
        ) from None
    if not isinstance(metadata, dict) or not isinstance(schema, dict):
        raise ModelBundleError(f"model bundle {where!r}: {METADATA_ENTRY} or {_SCHEMA} is not a JSON object; "
                               "retrain with `lcmodel train`")
    return metadata, schema, estimator.getvalue()


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:
        return archive.read(info)
    except zipfile.BadZipFile as exc:
        raise zipfile.BadZipFile(f"entry {info.filename} fails its CRC check: the file was damaged") from exc
    except (zlib.error, EOFError) as exc:
        raise zipfile.BadZipFile(f"entry {info.filename} cannot be inflated ({exc}): the file was damaged") from exc


def load_estimator(path: Path, entries: bytes, schema: dict[str, Any]) -> Any:
    """Build the estimator from the schema and entries :func:`read_bundle` returned (types checked first)."""
    _check_schema(schema, f"model bundle {str(path)!r}")
    try:
        # skops checks the types once more as it builds the tree of nodes, against the same explicit list
        return sio.loads(entries, trusted=sorted(TRUSTED_TYPES))
    except (sio_exceptions.UntrustedTypesFoundException, ImportError, ValueError, TypeError, KeyError,
            AttributeError, IndexError, OSError, zipfile.BadZipFile) as exc:
        raise ModelBundleError(
            f"model bundle {str(path)!r}: the estimator cannot be rebuilt ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); retrain with `lcmodel train`") from None


def describe_estimator(estimator: Any) -> dict[str, Any]:
    """A JSON-friendly description of the estimator (class, classes, features, params) for the metadata."""
    out: dict[str, Any] = {"class": f"{type(estimator).__module__}.{type(estimator).__qualname__}"}
    if hasattr(estimator, "classes_"):
        out["classes"] = np.asarray(estimator.classes_).tolist()
    if hasattr(estimator, "n_features_in_"):
        out["n_features_in"] = int(estimator.n_features_in_)
    out["fitted_with_feature_names"] = hasattr(estimator, "feature_names_in_")
    if hasattr(estimator, "get_params"):
        params = estimator.get_params(deep=False)
        plain = (str, int, float, bool, type(None))
        out["params"] = {k: v if isinstance(v, plain) else repr(v) for k, v in params.items()}
    return out


def _untrusted_message(where: str, bad: list[str]) -> str:
    return (f"{where} names types lcmodel does not load ({', '.join(bad[:5])}); a bundle holds only a "
            "scikit-learn forest or tree: retrain with `lcmodel train` (never load a model file you did not "
            "make)")


def _check_schema(schema: Any, where: str) -> None:
    """Every type and loader the skops schema names is trusted, else one ModelBundleError line."""
    types: set[str] = set()
    loaders: set[str] = set()
    _collect(schema, types, loaders)
    bad = sorted(types - TRUSTED_TYPES) + sorted(f"loader {n}" for n in loaders - _LOADERS)
    if bad:
        raise ModelBundleError(_untrusted_message(where, bad))


def _collect(node: Any, types: set[str], loaders: set[str]) -> None:
    if isinstance(node, dict):
        if "__class__" in node:
            types.add(f"{node.get('__module__', '')}.{node['__class__']}")
            loaders.add(str(node.get("__loader__", "")))
        for value in node.values():
            _collect(value, types, loaders)
    elif isinstance(node, list):
        for value in node:
            _collect(value, types, loaders)


def _renumber(node: Any, ids: dict[int, int], files: dict[str, str]) -> None:
    """Replace skops's ``id()`` numbers and array file names by their order of appearance (in place)."""
    if isinstance(node, dict):
        if isinstance(node.get("__id__"), int):
            node["__id__"] = ids.setdefault(node["__id__"], len(ids) + 1)
        if node.get("__loader__") == "NdArrayNode" and isinstance(node.get("file"), str):
            node["file"] = files.setdefault(node["file"], f"a{len(files) + 1:06d}.npy")
        for value in node.values():
            _renumber(value, ids, files)
    elif isinstance(node, list):
        for value in node:
            _renumber(value, ids, files)
