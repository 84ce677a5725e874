"""Bundles written by an older lcmodel: a joblib pickle, read only when trusted explicitly.

lcmodel up to bundle format 1 wrote ``model.joblib``, a joblib pickle of ``{"lcmodel_bundle": 1, "estimator":
..., "metadata": {...}}``. Unpickling runs whatever code the file names, so :func:`lcmodel.model_io.load_bundle`
calls :func:`load_pickled` only with ``trust=True`` (CLI ``--trust-model``): once, for a file the user made, to
predict with it before retraining (``lcmodel train`` writes the safe ``model.skops``).
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

from lcmodel.errors import ModelBundleError

__all__ = ["LEGACY_FORMAT", "load_pickled"]

logger = logging.getLogger(__name__)

#: the format version of the pickled bundles
LEGACY_FORMAT = 1
_MAGIC = "lcmodel_bundle"
_UNPICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, KeyError, IndexError, TypeError,
                    AttributeError, OSError, MemoryError, NotImplementedError)


def load_pickled(path: Path) -> tuple[Any, dict[str, Any]]:
    """The estimator and metadata of a pickled bundle (RUNS CODE from the file: only for trusted files).

    Raises
    ------
    ModelBundleError
        Not a readable pickle, not an lcmodel bundle (e.g. a bare estimator pickle), another format
        version, or a module it needs is not installed.
    """
    import joblib

    logger.warning("model bundle %s is a pickle written by an older lcmodel: loading it as a pickle because it "
                   "is trusted explicitly (--trust-model); retrain to get a model.skops", path)
    try:
        obj = joblib.load(path)
    except (ModuleNotFoundError, ImportError) as exc:
        raise ModelBundleError(
            f"model bundle {str(path)!r} needs a module that is not installed ({exc}); install it "
            "or retrain with `lcmodel train`"
        ) from None
    except _UNPICKLE_ERRORS as exc:
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise ModelBundleError(
            f"model bundle {str(path)!r} is not a readable joblib/pickle file "
            f"({type(exc).__name__}: {detail}); retrain with `lcmodel train`"
        ) from None
    if not isinstance(obj, dict) or _MAGIC not in obj or not isinstance(obj.get("metadata"), dict):
        raise ModelBundleError(
            f"{str(path)!r} is not an lcmodel model bundle (got {type(obj).__name__}); "
            "retrain with `lcmodel train`"
        )
    if obj[_MAGIC] != LEGACY_FORMAT:
        raise ModelBundleError(
            f"model bundle {str(path)!r} has format version {obj[_MAGIC]!r}, this lcmodel reads "
            f"pickled bundles of version {LEGACY_FORMAT} only; retrain with `lcmodel train`"
        )
    return obj.get("estimator"), obj["metadata"]
