"""A collection of rasters read as one source: the tiles of an embedding (or a reference) and their rules.

:func:`open_collection` turns a path spec (:mod:`lcmodel.sources.specs`) into a :class:`Collection`: the
tiles in order of preference, each with its header facts (:class:`~lcmodel.sources.tiles.Tile`). Tiles may
be in different CRSs (UTM zones) and orientations; their band names, band count and data type must agree, and
so must their nodata values (a clear error names the odd tile otherwise).

Where tiles overlap, a point (or pixel) belongs to the FIRST tile in the collection's order whose pixel under
it is valid (for extraction), or simply the first tile that contains it (for footprints): deterministic, and
for the AlphaEarth layout (tiles that meet edge to edge within a zone) it only matters at zone borders.

The collection's CRS (:attr:`Collection.crs`) is the CRS of the most tiles (ties: the first tile's): points,
spatial blocks and block sizes of a run are expressed in it.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from rasterio.crs import CRS
from shapely import Geometry

from lcmodel.errors import ConfigError, InputFileError
from lcmodel.sources.specs import expand_spec
from lcmodel.sources.tiles import Tile, describe_tile, reproject_xy

__all__ = ["Collection", "open_collection", "parse_aoi", "MANIFEST_FORMAT"]

MANIFEST_FORMAT = 1


def parse_aoi(aoi: Any, key: str = "embedding.aoi") -> Geometry | None:
    """An area of interest in lon/lat: ``[west, south, east, north]`` or a GeoJSON file (or dict).

    Raises
    ------
    ConfigError
        Not four numbers with west < east and south < north inside [-180, 180] x [-90, 90], or not GeoJSON.
    """
    if aoi is None:
        return None
    if isinstance(aoi, list | tuple):
        if len(aoi) != 4 or not all(isinstance(v, int | float) for v in aoi):
            raise ConfigError(f"{key} {aoi!r} is not [west, south, east, north] in degrees; give four numbers")
        w, s, e, n = (float(v) for v in aoi)
        if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
            raise ConfigError(
                f"{key} {list(aoi)} is not a lon/lat box (west < east within -180..180, south < north within "
                "-90..90); give [west, south, east, north] in degrees"
            )
        return shapely.box(w, s, e, n)
    data = aoi
    if isinstance(aoi, str | Path):
        try:
            data = json.loads(Path(aoi).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{key} {str(aoi)!r} is not a readable GeoJSON file ({exc}); give a GeoJSON file or "
                "[west, south, east, north]"
            ) from None
    try:
        feats = data.get("features") if data.get("type") == "FeatureCollection" else [data]
        geoms = [shapely.geometry.shape(f.get("geometry", f)) for f in feats]
        geom = shapely.union_all(geoms)
    except (AttributeError, TypeError, ValueError, KeyError, shapely.errors.GEOSException) as exc:
        raise ConfigError(f"{key}: the GeoJSON holds no usable geometry ({exc}); give polygons in lon/lat") from None
    if geom.is_empty:
        raise ConfigError(f"{key}: the GeoJSON geometry is empty; give polygons in lon/lat")
    return geom


@dataclass(frozen=True)
class Collection:
    """Tiles read as one source, in order of preference.

    Attributes
    ----------
    tiles : the tiles, in order.
    aoi : area of interest in lon/lat (GeoJSON mapping), or None.
    what : what the tiles are, for messages ("embedding raster").
    """

    tiles: tuple[Tile, ...]
    aoi: Mapping[str, Any] | None = None
    what: str = "embedding raster"

    def __len__(self) -> int:
        return len(self.tiles)

    def __iter__(self) -> Iterator[Tile]:
        return iter(self.tiles)

    @property
    def first(self) -> Tile:
        return self.tiles[0]

    @property
    def band_names(self) -> tuple[str, ...]:
        return self.first.band_names

    @property
    def crs(self) -> CRS:
        """The CRS of the most tiles (ties: the earliest), in which a run's points are expressed."""
        counts = Counter(t.crs_wkt for t in self.tiles)
        best = max(counts.values())
        wkt = next(t.crs_wkt for t in self.tiles if counts[t.crs_wkt] == best)
        return CRS.from_wkt(wkt)

    @property
    def crss(self) -> list[CRS]:
        """The distinct CRSs, in order of first appearance."""
        seen: dict[str, None] = {}
        for t in self.tiles:
            seen.setdefault(t.crs_wkt, None)
        return [CRS.from_wkt(w) for w in seen]

    def aoi_geometry(self) -> Geometry | None:
        return None if self.aoi is None else shapely.geometry.shape(self.aoi)

    def bounds_in(self, crs: Any) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of the union of the tiles' footprints in ``crs``."""
        return tuple(shapely.union_all([t.footprint(crs) for t in self.tiles]).bounds)  # type: ignore[return-value]

    def footprint_in(self, crs: Any) -> Geometry:
        """The union of the tiles' outlines in ``crs``, cut to the AOI when there is one."""
        geom = shapely.union_all([t.footprint(crs) for t in self.tiles])
        aoi = self.aoi_geometry()
        if aoi is not None:
            geom = geom.intersection(_reproject_geom(aoi, crs))
        return geom

    def assign(self, x: np.ndarray, y: np.ndarray, crs: Any) -> Iterator[tuple[int, np.ndarray, np.ndarray,
                                                                             np.ndarray]]:
        """For each tile in order: (tile index, point indices inside it, x, y in the tile's CRS).

        Every point inside several tiles is listed for each of them, in the collection's order, so a caller
        can take the first tile whose pixel is valid.
        """
        from lcmodel.geo import pixel_index

        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for i, tile in enumerate(self.tiles):
            if tile.crs_wkt not in cache:
                cache[tile.crs_wkt] = reproject_xy(crs, tile.crs_wkt, x, y)
            tx, ty = cache[tile.crs_wkt]
            _, _, inside = pixel_index(tile.affine, tx, ty, tile.height, tile.width)
            idx = np.flatnonzero(inside)
            if idx.size:
                yield i, idx, tx[idx], ty[idx]

    def to_dict(self) -> dict[str, Any]:
        return {"format": MANIFEST_FORMAT, "what": self.what, "aoi": self.aoi,
                "tiles": [t.to_dict() for t in self.tiles]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Collection:
        return cls(tiles=tuple(Tile.from_dict(t) for t in data["tiles"]), aoi=data.get("aoi"),
                   what=data.get("what", "embedding raster"))

    @classmethod
    def read(cls, path: Path | str) -> Collection:
        """A collection from a manifest written by :meth:`to_dict` (a run's ``.lcmodel/inputs/*.json``)."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    def check_consistent(self, key: str) -> None:
        """Band names, count, data type and nodata agree across tiles, or a one-line error naming the odd tile."""
        ref = self.first
        for t in self.tiles[1:]:
            for attr, label in (("count", "band count"), ("band_names", "band names"), ("dtype", "data type")):
                a, b = getattr(ref, attr), getattr(t, attr)
                if a != b:
                    show = (lambda v: f"{v[0]}..{v[-1]} ({len(v)})") if attr == "band_names" else str
                    raise InputFileError(
                        f"{key}: tile {t.name!r} has {label} {show(b)} but {ref.name!r} has {show(a)}; every "
                        "tile of a collection must have the same bands: leave the odd tile out"
                    )
            if not _same_nodata(ref.nodata, t.nodata):
                raise InputFileError(
                    f"{key}: tile {t.name!r} declares nodata {t.nodata} but {ref.name!r} declares {ref.nodata}; "
                    "tiles must share one nodata rule: fix the files (gdal_edit.py -a_nodata) or set "
                    "embedding.nodata"
                )


def _same_nodata(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or (math.isnan(a) and math.isnan(b))


def _reproject_geom(geom: Geometry, crs: Any) -> Geometry:
    seg = shapely.segmentize(geom, 0.05)

    def fn(coords: np.ndarray) -> np.ndarray:
        x2, y2 = reproject_xy("EPSG:4326", crs, coords[:, 0], coords[:, 1])
        return np.column_stack([x2, y2])

    return shapely.transform(seg, fn)


def open_collection(spec: Any, *, what: str, key: str, identity: Callable[[str], Mapping[str, Any]],
                    aoi: Any = None, year: int | None = None, csv_is_index: bool = True) -> Collection:
    """Resolve a path spec into a checked :class:`Collection` (headers only; no pixel is read).

    Parameters
    ----------
    spec : ``embedding.path`` / ``reference.path``: a file, URL, list, glob, folder or index.
    what, key : what the files are and the config key, for messages.
    identity : what identifies a file's content (local SHA-256, remote ETag), recorded per tile.
    aoi : ``embedding.aoi`` (a lon/lat box or a GeoJSON file): tiles outside it are left out.
    year : ``embedding.year``: filters an index.
    csv_is_index : a ``.csv`` is an index of tiles (embeddings); False for references, where it is points.

    Raises
    ------
    InputFileError
        A file is missing or unreadable, tiles disagree, or no tile intersects the AOI.
    """
    geom = parse_aoi(aoi)
    paths = expand_spec(spec, what, key, aoi=geom, year=year, csv_is_index=csv_is_index)
    tiles = [describe_tile(p, what, identity) for p in paths]
    if geom is not None:
        kept = [t for t in tiles if t.footprint("EPSG:4326").intersects(geom)]
        if not kept:
            raise InputFileError(
                f"{key}: none of the {len(tiles)} tiles intersects embedding.aoi "
                f"{tuple(round(v, 4) for v in geom.bounds)}; check the AOI (lon/lat) or the files"
            )
        tiles = kept
    collection = Collection(tuple(tiles), aoi=None if geom is None else shapely.geometry.mapping(geom), what=what)
    collection.check_consistent(key)
    return collection
