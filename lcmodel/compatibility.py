"""Whether an embedding raster can be predicted with a model bundle, checked before any block is read.

:func:`check_compatible` compares an open raster with the facts a :class:`~lcmodel.model_io.ModelBundle`
records about its training embedding: band count, the names of the bands the model uses (at their
``band_indexes``; only when both sides have real names, not band_<index>), CRS, and the nodata rule (data
type and de-quantization must match; a different declared nodata value is logged and the bundle's rule
applies). A mismatch is one
:class:`~lcmodel.errors.CompatibilityError` line naming it and the fix.

A bundle records ONE CRS: that of its training collection (:attr:`lcmodel.sources.Collection.crs`). The tiles
of that collection may lie in other UTM zones, and the embedding features do not depend on the CRS, so a
run predicting its own tiles takes :func:`bundle_for_tile`: the bundle as it applies to one tile whose CRS is
among the run's manifest's. Any other raster in another CRS is still refused by :func:`check_compatible`.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from typing import Any

from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.io import DatasetReader

from lcmodel.bands import band_list_text
from lcmodel.embedding import NodataRule, band_names
from lcmodel.errors import CompatibilityError, ModelBundleError
from lcmodel.geo import crs_label
from lcmodel.model_io import ModelBundle

__all__ = ["check_compatible", "bundle_for_tile"]

logger = logging.getLogger(__name__)

_GENERIC_BAND = re.compile(r"^band_\d+$")


def check_compatible(bundle: ModelBundle, src: DatasetReader) -> NodataRule:
    """Check that an open embedding raster can be predicted with a bundle, before reading any block.

    Checks, in order: band count (that of the training raster, also when the model uses some of its bands
    only), the names of the bands used at their ``band_indexes`` (only when both the bundle and the raster
    have real names, not band_<index>), CRS (when the bundle has one), and the raster's nodata rule against
    the bundle's (data type and de-quantization must match).

    Parameters
    ----------
    bundle : the model bundle.
    src : the open embedding raster.

    Returns
    -------
    NodataRule
        The rule to apply: the bundle's (the same rule as at extraction).

    Raises
    ------
    CompatibilityError
        One line naming the mismatch and the fix.
    """
    name = str(src.name)
    indexes = bundle.source_indexes
    if src.count != bundle.source_band_count:
        used = "" if bundle.uses_all_bands else (
            f" (using {bundle.n_bands} of them: bands {band_list_text(indexes)})")
        raise CompatibilityError(
            f"embedding {name!r} has {src.count} bands, the model was trained on "
            f"{bundle.source_band_count}{used}; predict with the embedding the model was trained on (same bands, "
            "same order) or retrain"
        )
    every = band_names(src)
    raster_names = [every[i - 1] for i in indexes]
    expected = list(bundle.band_names)
    if _has_real_names(raster_names) and _has_real_names(expected) and raster_names != expected:
        if sorted(raster_names) == sorted(expected):
            i = next(i for i, (a, b) in enumerate(zip(raster_names, expected, strict=False)) if a != b)
            raise CompatibilityError(
                f"embedding {name!r} has the model's bands in another order (band {indexes[i]} is "
                f"{raster_names[i]!r}, the model expects {expected[i]!r}); reorder the bands to "
                "the training order or retrain"
            )
        missing = [b for b in expected if b not in raster_names][:3]
        raise CompatibilityError(
            f"embedding {name!r} band names differ from the model's (model bands {missing} are "
            "missing); predict with the embedding the model was trained on or retrain"
        )
    if bundle.crs_wkt:
        try:
            model_crs = CRS.from_wkt(bundle.crs_wkt)
        except CRSError:
            raise ModelBundleError(
                f"the model bundle's CRS is not valid WKT ({bundle.crs_wkt[:60]!r}...); "
                "retrain with `lcmodel train`"
            ) from None
        if src.crs is None:
            raise CompatibilityError(
                f"embedding {name!r} has no CRS, the model was trained on "
                f"{crs_label(model_crs)}; assign the CRS to the raster (gdal_edit.py -a_srs) "
                "or retrain"
            )
        if src.crs != model_crs:
            raise CompatibilityError(
                f"embedding {name!r} is in {crs_label(src.crs)}, the model was trained on "
                f"{crs_label(model_crs)}; reproject the embedding to the training CRS or retrain"
            )
    raster_rule = NodataRule.detect(src)
    rule = bundle.nodata_rule
    if raster_rule.dtype != rule.dtype or raster_rule.dequantize != rule.dequantize:
        raise CompatibilityError(
            f"embedding {name!r} is {raster_rule.describe()}, the model was trained on "
            f"{rule.describe()}; predict with an embedding of the same data type and encoding "
            "or retrain"
        )
    if raster_rule.nodata != rule.nodata and raster_rule.nodata is not None:
        logger.warning(
            "embedding %s declares nodata %g, the model's rule uses %s; applying the model's "
            "rule (%s)",
            name,
            raster_rule.nodata,
            "none" if rule.nodata is None else f"{rule.nodata:g}",
            rule.describe(),
        )
    return rule


def bundle_for_tile(bundle: ModelBundle, tile_crs: Any, collection_crs: Sequence[Any]) -> ModelBundle:
    """The bundle as it applies to one tile of the collection it was trained on, which may be in another CRS.

    AlphaEarth-like embeddings are per-pixel vectors whose values do not depend on the map projection, so a
    model trained on a collection spanning several UTM zones applies to each of its tiles in the tile's own
    CRS. Both the bundle's CRS and the tile's must be among ``collection_crs`` (the CRSs of the run's
    manifest); the copy returned records the tile's CRS, so :func:`check_compatible` passes its CRS check
    and keeps every other check (bands, names, nodata rule).

    Parameters
    ----------
    bundle : the model bundle (its ``crs_wkt`` is the collection's CRS).
    tile_crs : the tile's CRS (a rasterio ``CRS`` or WKT).
    collection_crs : the CRSs of the collection's tiles.

    Raises
    ------
    CompatibilityError
        The bundle's or the tile's CRS is not one of the collection's.
    """
    wanted = _crs(tile_crs)
    allowed = [_crs(c) for c in collection_crs]
    if bundle.crs_wkt and not any(_crs(bundle.crs_wkt) == c for c in allowed):
        raise CompatibilityError(
            f"the model was trained on {crs_label(_crs(bundle.crs_wkt))}, which is none of this collection's CRSs "
            f"({', '.join(crs_label(c) for c in allowed)}); predict the collection the model was trained on, "
            "or retrain on this one"
        )
    if not any(wanted == c for c in allowed):
        raise CompatibilityError(
            f"tile CRS {crs_label(wanted)} is none of the collection's CRSs "
            f"({', '.join(crs_label(c) for c in allowed)}); predict only the tiles of the run's manifest"
        )
    return dataclasses.replace(bundle, crs_wkt=wanted.to_wkt())


def _crs(value: Any) -> CRS:
    return value if isinstance(value, CRS) else CRS.from_user_input(value)


def _has_real_names(names: list[str]) -> bool:
    return not all(_GENERIC_BAND.match(n) for n in names)
