"""lcmodel: land-cover maps from satellite geoembeddings.

A plain library, one small module per pipeline stage (see DESIGN.md). It never imports prefect, mlflow or flows.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lcmodel")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
