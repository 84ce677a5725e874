"""A GDAL VRT mosaic of tiles that share one grid (one CRS, one pixel size, north-up, aligned).

Several ESA WorldCover tiles, or the per-tile maps of one UTM zone, are read as one raster through a VRT:
GDAL reads only the tiles a window touches. This writes the XML directly (what ``gdalbuildvrt`` would,
for the simple case of aligned tiles), so no GDAL command-line tool is needed. Where tiles overlap, the
FIRST tile in the list wins (VRT sources are drawn in order, later ones on top: the list is written
reversed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from lcmodel.errors import InputFileError
from lcmodel.io import atomic_path
from lcmodel.sources.tiles import Tile

__all__ = ["write_mosaic_vrt", "mosaic_grid", "identities"]

_GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
               "int32": "Int32", "float32": "Float32", "float64": "Float64"}


def mosaic_grid(tiles: Sequence[Tile], key: str) -> tuple[tuple[float, ...], int, int]:
    """The union grid of aligned north-up tiles: (geotransform, width, height), or a one-line error."""
    first = tiles[0]
    a, _, _, _, e, _ = first.transform
    for t in tiles:
        if t.crs_wkt != first.crs_wkt:
            raise InputFileError(
                f"{key}: tile {t.name!r} is in another CRS than {first.name!r}; tiles read as one mosaic must "
                "share one CRS: warp them to one CRS first (gdalwarp)"
            )
        if t.south_up:
            raise InputFileError(
                f"{key}: tile {t.name!r} is stored south-up; a mosaic needs north-up tiles: give the tiles "
                "one at a time or flip them (gdalwarp)"
            )
        if not (math.isclose(t.transform[0], a, rel_tol=1e-9) and math.isclose(t.transform[4], e, rel_tol=1e-9)):
            raise InputFileError(
                f"{key}: tile {t.name!r} has pixel size {t.transform[0]:g} x {-t.transform[4]:g}, "
                f"{first.name!r} {a:g} x {-e:g}; tiles of a mosaic must share one pixel size"
            )
    left = min(t.transform[2] for t in tiles)
    top = max(t.transform[5] for t in tiles)
    right = max(t.transform[2] + t.width * a for t in tiles)
    bottom = min(t.transform[5] + t.height * e for t in tiles)
    width = int(round((right - left) / a))
    height = int(round((bottom - top) / e))
    for t in tiles:
        off_x = (t.transform[2] - left) / a
        off_y = (t.transform[5] - top) / e
        if abs(off_x - round(off_x)) > 1e-6 or abs(off_y - round(off_y)) > 1e-6:
            raise InputFileError(
                f"{key}: tile {t.name!r} is not aligned with the grid of {first.name!r} (offset "
                f"{off_x:.3f}, {off_y:.3f} px); tiles of a mosaic must share one pixel grid"
            )
    return (left, a, 0.0, top, 0.0, e), width, height


def write_mosaic_vrt(tiles: Sequence[Tile], path: Path | str, *, key: str,
                     metadata: Mapping[str, str] | None = None,
                     band_labels: Sequence[str] | None = None) -> Path:
    """Write a VRT mosaic of aligned tiles (all bands), atomically; the first tile wins where they overlap.

    Parameters
    ----------
    tiles : the tiles, in order of preference.
    path : the ``.vrt`` to write.
    key : the config key, for messages.
    metadata : dataset metadata items to record (e.g. the tiles' content identities, so the VRT's digest
        changes when a tile's content does).
    band_labels : band descriptions (default: the first tile's band names).
    """
    gt, width, height = mosaic_grid(tiles, key)
    first = tiles[0]
    dtype = _GDAL_TYPES.get(first.dtype)
    if dtype is None:
        raise InputFileError(f"{key}: data type {first.dtype} cannot be mosaicked; convert the tiles")
    path = Path(path)
    lines = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
             f"  <SRS>{escape(first.crs_wkt)}</SRS>",
             "  <GeoTransform>" + ", ".join(repr(float(v)) for v in gt) + "</GeoTransform>"]
    if metadata:
        lines.append("  <Metadata>")
        lines += [f"    <MDI key={quoteattr(k)}>{escape(v)}</MDI>" for k, v in metadata.items()]
        lines.append("  </Metadata>")
    labels = list(band_labels) if band_labels is not None else list(first.band_names)
    for band in range(1, first.count + 1):
        lines.append(f'  <VRTRasterBand dataType="{dtype}" band="{band}">')
        if first.nodata is not None:
            lines.append(f"    <NoDataValue>{_number(first.nodata)}</NoDataValue>")
        lines.append(f"    <Description>{escape(labels[band - 1])}</Description>")
        for t in reversed(tiles):  # later sources are drawn on top: the first tile last
            xoff = int(round((t.transform[2] - gt[0]) / gt[1]))
            yoff = int(round((t.transform[5] - gt[3]) / gt[5]))
            bh, bw = t.block_shape
            lines += [
                "    <ComplexSource>" if first.nodata is not None else "    <SimpleSource>",
                f'      <SourceFilename relativeToVRT="0">{escape(_gdal_name(t.path))}</SourceFilename>',
                f"      <SourceBand>{band}</SourceBand>",
                f'      <SourceProperties RasterXSize="{t.width}" RasterYSize="{t.height}" '
                f'DataType="{dtype}" BlockXSize="{bw}" BlockYSize="{bh}" />',
                f'      <SrcRect xOff="0" yOff="0" xSize="{t.width}" ySize="{t.height}" />',
                f'      <DstRect xOff="{xoff}" yOff="{yoff}" xSize="{t.width}" ySize="{t.height}" />',
            ]
            if first.nodata is not None:
                lines.append(f"      <NODATA>{_number(first.nodata)}</NODATA>")
            lines.append("    </ComplexSource>" if first.nodata is not None else "    </SimpleSource>")
        lines.append("  </VRTRasterBand>")
    lines.append("</VRTDataset>")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path


def _number(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _gdal_name(path: str) -> str:
    from lcmodel.sources.remote import gdal_path

    return gdal_path(path)


def identities(tiles: Sequence[Tile]) -> dict[str, Any]:
    """The tiles' content identities as VRT metadata items."""
    import json

    return {f"lcmodel_tile_{i}": json.dumps({"path": t.path, **dict(t.identity)}, sort_keys=True)
            for i, t in enumerate(tiles)}

