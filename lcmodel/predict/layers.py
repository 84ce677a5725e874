"""The output rasters of a prediction, each described by one :class:`OutputLayer`.

The class map, the confidence map and the uncertainty rasters (probabilities, margin, entropy) differ only
in data: their name, data type, nodata value, band descriptions and tags, overview resampling, and whether
they carry a colour table. :mod:`lcmodel.predict.cog` writes any layer the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rasterio.enums import Resampling

from lcmodel.classes import ClassTable
from lcmodel.uncertainty import UNCERTAINTY_NODATA, UNCLASSIFIED_NAME

__all__ = [
    "CONFIDENCE_NODATA",
    "OutputLayer",
    "map_layer",
    "confidence_layer",
    "uncertainty_layers",
    "prediction_layers",
    "unclassified_tags",
    "UNCLASSIFIED_RGBA",
]

#: Nodata value of the confidence raster (confidence itself is 0..100).
CONFIDENCE_NODATA = 255
#: Colour of the reserved "unclassified" map value.
UNCLASSIFIED_RGBA = (0, 0, 0, 255)
_NO_COLOR = (128, 128, 128, 255)  # a class the table has no colour for
_TRANSPARENT = (0, 0, 0, 0)  # the map's nodata

RGBA = tuple[int, int, int, int]


@dataclass(frozen=True)
class OutputLayer:
    """One output raster of a prediction.

    Attributes
    ----------
    name : ``map``, ``confidence``, ``probabilities``, ``margin`` or ``entropy`` (its temporary file is
        ``<name>.tif`` in the work folder).
    key : the name of its array in a classified block (``labels`` for the map, else ``name``).
    path : the COG to write.
    dtype, nodata : data type and nodata value.
    descriptions : one band description per band (so also the band count).
    tags : dataset tags, in this order.
    resampling : resampling of its overviews (mode for classes, average for percentages).
    colours : colour table (value -> RGBA), written after the overviews and only for 8/16-bit layers;
        None for none.
    """

    name: str
    key: str
    path: Path
    dtype: str
    nodata: int
    descriptions: tuple[str, ...]
    tags: dict[str, str] = field(default_factory=dict)
    resampling: Resampling = Resampling.average
    colours: dict[int, RGBA] | None = None

    @property
    def count(self) -> int:
        """Number of bands."""
        return len(self.descriptions)


def _class_name(table: ClassTable, value: int) -> str:
    return table.name(value) if value in table.values else str(value)


def _class_rgba(table: ClassTable, value: int) -> RGBA:
    return table.colormap().get(value, _NO_COLOR)


def unclassified_tags(value: int) -> dict[str, str]:
    """The map tags that name the reserved "unclassified" value."""
    return {f"CLASS_{value}": UNCLASSIFIED_NAME, "LCMODEL_UNCLASSIFIED": str(value)}


def map_layer(
    path: Path,
    class_out: np.ndarray,
    nodata: int,
    table: ClassTable,
    unclassified_value: int | None = None,
) -> OutputLayer:
    """The class map: class-name tags (``CLASS_<v>`` and JSON ``LCMODEL_CLASSES``), the classes' colour table
    (nodata transparent), mode overviews; the reserved unclassified value (if any) tagged and coloured."""
    values = [int(c) for c in class_out]
    entries = []
    for v in values:
        r, g, b, _ = _class_rgba(table, v)
        entries.append({"value": v, "name": _class_name(table, v), "color": f"#{r:02x}{g:02x}{b:02x}"})
    tags = {f"CLASS_{e['value']}": str(e["name"]) for e in entries}
    tags["LCMODEL_CLASSES"] = json.dumps(entries, separators=(",", ":"))
    colours = {v: _class_rgba(table, v) for v in values}
    colours[nodata] = _TRANSPARENT
    if unclassified_value is not None:
        tags.update(unclassified_tags(unclassified_value))
        colours[unclassified_value] = UNCLASSIFIED_RGBA
    return OutputLayer(
        name="map",
        key="labels",
        path=path,
        dtype=str(class_out.dtype),
        nodata=nodata,
        descriptions=("land cover class",),
        tags=tags,
        resampling=Resampling.mode,
        colours=colours,
    )


def confidence_layer(path: Path) -> OutputLayer:
    """uint8 ``round(100 * highest class probability)``, nodata 255, averaged overviews."""
    return OutputLayer(
        name="confidence",
        key="confidence",
        path=path,
        dtype="uint8",
        nodata=CONFIDENCE_NODATA,
        descriptions=("confidence (%)",),
        tags={"LCMODEL_CONFIDENCE": "round(100 * highest class probability); 255 = nodata"},
    )


def uncertainty_layers(paths: dict[str, Path], class_out: np.ndarray, table: ClassTable) -> list[OutputLayer]:
    """The uncertainty rasters asked for (``probabilities``, ``margin``, ``entropy`` -> path), in that order
    of ``paths``: uint8 percentages, nodata 255, averaged overviews."""
    values = [int(c) for c in class_out]
    layers = []
    for name, path in paths.items():
        if name == "probabilities":
            descriptions = tuple(_class_name(table, v) for v in values)
            tags = {
                "LCMODEL_PROBABILITIES": "round(100 * class probability); 255 = nodata",
                "LCMODEL_CLASS_VALUES": ",".join(str(v) for v in values),
            }
        elif name == "margin":
            descriptions = ("margin (%)",)
            tags = {"LCMODEL_MARGIN": "round(100 * (top-1 - top-2 probability)); 255 = nodata"}
        elif name == "entropy":
            descriptions = ("normalised entropy (%)",)
            tags = {"LCMODEL_ENTROPY": "round(100 * H / ln(n_classes)); 255 = nodata"}
        else:
            raise ValueError(f"unknown uncertainty layer {name!r}; use probabilities, margin or entropy")
        layers.append(OutputLayer(name, name, path, "uint8", UNCERTAINTY_NODATA, descriptions, tags))
    return layers


def prediction_layers(
    out_path: Path,
    conf_out: Path | None,
    extra_paths: dict[str, Path],
    class_out: np.ndarray,
    nodata: int,
    table: ClassTable,
    unclassified_value: int | None,
) -> tuple[OutputLayer, ...]:
    """Every output of a prediction: the map first, then the confidence map and the uncertainty rasters asked
    for."""
    layers = [map_layer(out_path, class_out, nodata, table, unclassified_value)]
    if conf_out is not None:
        layers.append(confidence_layer(conf_out))
    layers += uncertainty_layers(extra_paths, class_out, table)
    return tuple(layers)
