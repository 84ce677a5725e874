"""A STAC catalog of a tile collection's predicted maps: a collection and one item per tile.

``OUTPUT/stac/collection.json`` is a STAC Collection (self-contained: every link and asset href is relative,
so the output folder can be moved or published as it is); ``stac/<tile stem>/<tile stem>.json`` is one Item
per tile with:

- ``geometry`` / ``bbox``: the tile map's outline in lon/lat (EPSG:4326), each edge densified to 5 points;
- the projection extension: ``proj:code`` (``EPSG:<n>``, else ``proj:wkt2``), ``proj:shape`` [rows, cols],
  ``proj:transform`` (the six affine coefficients) of the tile's map grid;
- assets ``map`` (roles data; the classification extension's ``classification:classes``: value, name, title,
  color_hint and, per tile, the pixel count of each class; the nodata value marked ``nodata``), ``confidence``
  and the optional ``probabilities``, ``margin`` and ``entropy`` layers, each pointing at the tile's COG
  (``../../tiles/<stem>/<layer>.tif``);
- a time: the embedding's year (``start_datetime`` / ``end_datetime``) when ``embedding.year`` is set,
  else the model bundle's creation time as ``datetime`` (STAC needs one; nothing here reads a clock, so the
  catalog's bytes are reproducible).

The collection carries the union extent and, as assets, the mosaics (VRTs, the COG mosaic). The catalog is
written into a temporary folder and swapped into place, so a reader never sees half of it.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import shapely

from lcmodel.sources import Tile

if TYPE_CHECKING:
    from pystac.extensions.classification import Classification

__all__ = ["StacTile", "ClassInfo", "write_stac", "COLLECTION_ID"]

COLLECTION_ID = "lcmodel-prediction"
_MEDIA = {".tif": "image/tiff; application=geotiff; profile=cloud-optimized", ".vrt": "application/xml"}
_NAME = re.compile(r"[^0-9A-Za-z_-]+")


@dataclass(frozen=True)
class ClassInfo:
    """One class of the map: value, name and ``#rrggbb`` colour (from the class table)."""

    value: int
    name: str
    color: str


@dataclass(frozen=True)
class StacTile:
    """What one item describes: the tile's stem, its map's header and its layer files (name -> COG)."""

    stem: str
    map: Tile
    layers: Mapping[str, Path]
    class_counts: Mapping[int, int] = field(default_factory=dict)


def write_stac(folder: Path, tiles: Sequence[StacTile], classes: Sequence[ClassInfo], *, nodata: int | None,
               year: int | None, created: str, mosaics: Mapping[str, Path] | None = None,
               unclassified_value: int | None = None) -> list[Path]:
    """Write the catalog into ``folder`` (replacing an earlier one); the files written, collection first.

    Parameters
    ----------
    folder : the catalog's folder (``OUTPUT/stac``).
    tiles : one entry per tile, in the collection's order.
    classes : the map's classes.
    nodata : the maps' nodata value (listed as a class marked ``nodata``).
    year : the embedding's year, or None.
    created : ISO 8601 time used when ``year`` is None (the model bundle's creation time).
    mosaics : collection assets (name -> file), e.g. ``{"map_32631": .../map_32631.vrt}``.
    unclassified_value : the reserved "unclassified" map value, listed as a class when set.
    """
    import pystac
    from pystac.extensions.classification import ClassificationExtension
    from pystac.extensions.projection import ProjectionExtension

    folder = Path(folder)
    start, end, when = _times(year, created)
    items = []
    outlines = []
    for t in tiles:
        outline = t.map.footprint("EPSG:4326", densify=5)
        outlines.append(outline)
        item = pystac.Item(id=t.stem, geometry=shapely.geometry.mapping(outline), bbox=list(outline.bounds),
                           datetime=when, properties={}, start_datetime=start, end_datetime=end)
        epsg = t.map.crs.to_epsg()
        ProjectionExtension.ext(item, add_if_missing=True).apply(
            epsg=epsg or None, wkt2=None if epsg else t.map.crs_wkt, shape=[t.map.height, t.map.width],
            transform=[float(v) for v in t.map.transform])
        for name, path in t.layers.items():
            item.add_asset(name, pystac.Asset(href=str(Path(path).resolve()), media_type=_media(path),
                                              roles=["data"] if name == "map" else ["metadata"], title=name))
        ClassificationExtension.ext(item.assets["map"], add_if_missing=True).classes = \
            _classes(classes, nodata, unclassified_value, t.class_counts)
        items.append(item)
    union = shapely.union_all(outlines)
    extent = pystac.Extent(pystac.SpatialExtent([list(union.bounds)]),
                           pystac.TemporalExtent([[start or when, end or when]]))
    collection = pystac.Collection(id=COLLECTION_ID, extent=extent, license="other",
                                   description=f"Land-cover maps predicted by lcmodel, one item per embedding tile "
                                               f"({len(items)} tiles)")
    for name, path in (mosaics or {}).items():
        collection.add_asset(name, pystac.Asset(href=str(Path(path).resolve()), media_type=_media(path),
                                                roles=["data"], title=name))
    for item in items:
        collection.add_item(item)
    tmp = folder.with_name(f".{folder.name}-next")
    shutil.rmtree(tmp, ignore_errors=True)
    collection.normalize_hrefs(str(tmp.resolve()))
    collection.make_all_asset_hrefs_relative()
    collection.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    old = folder.with_name(f".{folder.name}-old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return [folder / "collection.json", *(folder / i.id / f"{i.id}.json" for i in items)]


def _times(year: int | None, created: str) -> tuple[datetime | None, datetime | None, datetime | None]:
    """(start, end, datetime): the year as an interval, else the creation time."""
    if year is not None:
        return datetime(year, 1, 1, tzinfo=UTC), datetime(year, 12, 31, 23, 59, 59, tzinfo=UTC), None
    when = datetime.fromisoformat(created.replace("Z", "+00:00")) if created else datetime(1970, 1, 1, tzinfo=UTC)
    return None, None, when if when.tzinfo else when.replace(tzinfo=UTC)


def _media(path: Path | str) -> str:
    return _MEDIA.get(Path(path).suffix.lower(), "application/octet-stream")


def _classes(classes: Sequence[ClassInfo], nodata: int | None, unclassified_value: int | None,
             counts: Mapping[int, int]) -> list[Classification]:
    from pystac.extensions.classification import Classification

    out: list[Classification] = []
    for c in classes:
        out.append(Classification.create(value=int(c.value), name=_short_name(c.name, c.value), title=c.name,
                                         color_hint=c.color.lstrip("#").upper(),
                                         count=int(counts[c.value]) if c.value in counts else None))
    if unclassified_value is not None:
        out.append(Classification.create(value=int(unclassified_value), name="unclassified", title="unclassified"))
    if nodata is not None:
        out.append(Classification.create(value=int(nodata), name="nodata", title="no data", nodata=True))
    return out


def _short_name(name: str, value: int) -> str:
    """A machine-readable class name (letters, digits, ``-`` and ``_`` only), as the extension asks."""
    return _NAME.sub("_", name).strip("_") or f"class_{value}"
