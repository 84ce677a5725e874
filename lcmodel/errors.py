"""Errors and warnings raised by lcmodel.

Every error a user can cause derives from :class:`LcmodelError` and carries a one-line message that names
the offending value, what was expected and the fix. Each subclass also inherits the builtin it resembles
(``ValueError``, ``OSError``) so callers can catch either, as rasterio does.

The CLI prints ``str(err)`` of an :class:`LcmodelError` and exits 2 with no traceback; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "LcmodelError",
    "ConfigError",
    "InputFileError",
    "InputDataError",
    "ClassTableError",
    "NoOverlapError",
    "InsufficientDataError",
    "ModelBundleError",
    "CompatibilityError",
    "PredictionError",
    "OutputError",
    "LcmodelWarning",
    "DataWarning",
]


class LcmodelError(Exception):
    """Root of every error that lcmodel raises on purpose (a user's mistake or a condition we explain)."""


class ConfigError(LcmodelError, ValueError):
    """The run configuration is invalid: unknown key, wrong type, out-of-range value."""


class InputFileError(LcmodelError, OSError):
    """An input file is missing, unreadable, or not of the expected format (not a raster, no CRS, corrupt)."""


class InputDataError(LcmodelError, ValueError):
    """An input file is readable but its content is unusable (missing column, non-numeric coordinates...)."""


class ClassTableError(InputDataError):
    """The class table (code -> value) is malformed: missing columns, duplicate codes, non-integer values."""


class NoOverlapError(InputDataError):
    """Reference points and embedding raster do not overlap (no point falls on a valid pixel)."""


class InsufficientDataError(InputDataError):
    """Too few samples for the requested operation (a class too small to stratify, fewer rows than CV folds)."""


class ModelBundleError(LcmodelError, ValueError):
    """A model file is not an lcmodel bundle, or was written by an incompatible format version."""


class CompatibilityError(LcmodelError, ValueError):
    """An embedding raster does not match the model bundle (band count, band names, CRS, nodata rule)."""


class PredictionError(LcmodelError, RuntimeError):
    """Prediction failed inside a block; the message names the block's window. Never a silent hole."""


class OutputError(LcmodelError, OSError):
    """An output cannot be written (folder not writable, disk full, locked by another run)."""


class LcmodelWarning(UserWarning):
    """Root of lcmodel's warnings."""


class DataWarning(LcmodelWarning):
    """Something in the data was dropped or looks suspicious; the message counts what and says why."""
