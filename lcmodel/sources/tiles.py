"""One raster of a collection: where it is, its grid, its bands, and what identifies its content.

A :class:`Tile` is read from the file's header (no pixel is read) and is what a run's manifest records for
each file, so a stage given the manifest knows every tile's grid without opening it, and the manifest's
digest changes when any tile's content does. Grids may be north-up or south-up (positive y pixel size, as
the public AlphaEarth COGs are stored): nothing here assumes an orientation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from affine import Affine
from pyproj import CRS as ProjCRS
from pyproj import Transformer
from rasterio.crs import CRS
from shapely import Polygon

from lcmodel.embedding import band_names
from lcmodel.errors import InputFileError
from lcmodel.geo import crs_label, grid_orientation, normalised_bounds

__all__ = ["Tile", "describe_tile", "reproject_xy"]


@dataclass(frozen=True)
class Tile:
    """The header facts of one raster of a collection.

    Attributes
    ----------
    path : the file as lcmodel opens it (an absolute local path, a URL or a ``/vsi...`` path).
    crs_wkt : its CRS as WKT.
    transform : its affine pixel -> x/y transform, as the six numbers (a, b, c, d, e, f).
    width, height, count : size in pixels and number of bands.
    dtype : data type of the bands (numpy name).
    nodata : declared nodata value, or None.
    band_names : one name per band.
    block_shape : internal block (rows, cols) of band 1.
    identity : what identifies the content (``sha256`` for a local file; ETag, size and date for a remote one).
    """

    path: str
    crs_wkt: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int
    count: int
    dtype: str
    nodata: float | None
    band_names: tuple[str, ...]
    block_shape: tuple[int, int]
    identity: Mapping[str, Any] = field(default_factory=dict)

    @property
    def affine(self) -> Affine:
        return Affine(*self.transform)

    @property
    def crs(self) -> CRS:
        return CRS.from_wkt(self.crs_wkt)

    @property
    def name(self) -> str:
        """The file name (last path component, no query string), for messages."""
        from lcmodel.sources.remote import file_name

        return file_name(self.path)

    @property
    def south_up(self) -> bool:
        """True when row 0 is the southern edge (positive y pixel size)."""
        return self.transform[4] > 0

    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the tile's CRS, whatever its orientation."""
        return tuple(normalised_bounds(self.affine, self.width, self.height))  # type: ignore[return-value]

    def footprint(self, crs: Any, densify: int = 21) -> Polygon:
        """The tile's outline in another CRS, each edge densified to ``densify`` points."""
        t = np.linspace(0.0, 1.0, densify)
        w, h = self.width, self.height
        cols = np.concatenate([t * w, np.full(densify, w), (1 - t) * w, np.zeros(densify)])
        rows = np.concatenate([np.zeros(densify), t * h, np.full(densify, h), (1 - t) * h])
        a = self.affine
        xs = a.c + cols * a.a + rows * a.b
        ys = a.f + cols * a.d + rows * a.e
        x2, y2 = reproject_xy(self.crs_wkt, crs, xs, ys)
        return Polygon(np.column_stack([x2, y2]))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["identity"] = dict(self.identity)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tile:
        d = dict(data)
        d["transform"] = tuple(float(v) for v in d["transform"])
        d["band_names"] = tuple(d["band_names"])
        d["block_shape"] = tuple(int(v) for v in d["block_shape"])
        return cls(**d)

    def describe(self) -> str:
        return f"{self.name} ({self.width} x {self.height} px, {self.count} bands {self.dtype}, " \
               f"{crs_label(self.crs)})"


def reproject_xy(src: Any, dst: Any, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x/y from one CRS to another (always_xy); the same arrays back when the CRSs are equal."""
    s = ProjCRS.from_user_input(src.to_wkt() if hasattr(src, "to_wkt") else src)
    d = ProjCRS.from_user_input(dst.to_wkt() if hasattr(dst, "to_wkt") else dst)
    if s == d:
        return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    tx = Transformer.from_crs(s, d, always_xy=True)
    xo, yo = tx.transform(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    return np.asarray(xo, dtype=np.float64), np.asarray(yo, dtype=np.float64)


def describe_tile(path: str, what: str, identity: Callable[[str], Mapping[str, Any]]) -> Tile:
    """Read a raster's header into a :class:`Tile` (no pixel read).

    Parameters
    ----------
    path : the file (local path, URL or /vsi path).
    what : what the file is, for messages ("embedding tile").
    identity : returns what identifies the file's content (a local file's SHA-256, a remote file's ETag).

    Raises
    ------
    InputFileError
        Missing, not a raster, or no CRS.
    InputDataError
        A rotated or sheared grid.
    """
    from lcmodel.io import open_raster

    with open_raster(path, what) as src:
        if src.crs is None:
            raise InputFileError(
                f"{what} {path!r} has no CRS; assign one (e.g. gdal_edit.py -a_srs EPSG:32720) or export it "
                "with its CRS"
            )
        t = src.transform
        grid_orientation(t, src.width, src.height, name=f"{what} {str(path)!r}")  # north-up or south-up only
        tile = Tile(
            path=str(path),
            crs_wkt=src.crs.to_wkt(),
            transform=(t.a, t.b, t.c, t.d, t.e, t.f),
            width=int(src.width),
            height=int(src.height),
            count=int(src.count),
            dtype=np.dtype(src.dtypes[0]).name,
            nodata=None if src.nodata is None or np.isnan(src.nodata) else float(src.nodata),
            band_names=tuple(band_names(src)),
            block_shape=(int(src.block_shapes[0][0]), int(src.block_shapes[0][1])),
        )
    return Tile(**{**tile.__dict__, "identity": dict(identity(str(path)))})
