"""Area-adjusted accuracy of a map from a labelled validation sample (Olofsson et al. 2014).

:func:`assess_labelled` reads the labelled file back, reads each point's map class from the map, counts each
map class's pixels (the strata sizes) and returns :func:`lcmodel.accuracy.olofsson.stratified_estimates`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from lcmodel.accuracy.design import map_class_counts
from lcmodel.accuracy.olofsson import confusion_counts, stratified_estimates
from lcmodel.accuracy.sample_io import read_labelled
from lcmodel.errors import InputDataError
from lcmodel.io import open_raster

__all__ = ["assess_labelled"]


def assess_labelled(
    map_path: Path | str, labelled_path: Path | str, *, reference_column: str = "reference"
) -> dict[str, Any]:
    """Area-adjusted accuracy and areas of a map from a labelled stratified sample (Olofsson et al. 2014).

    The map class of each point is read from the map at its x/y (the file's ``map_class`` is checked against
    it); the strata sizes are the map's class pixel counts.

    Returns
    -------
    dict
        :func:`lcmodel.accuracy.olofsson.stratified_estimates` plus ``map``, ``labelled_points``, ``n_labelled``.
    """
    df = read_labelled(labelled_path, reference_column=reference_column)
    classes, counts, area = map_class_counts(map_path)
    with open_raster(map_path, "class map") as src:
        rows, cols = rasterio.transform.rowcol(
            src.transform, df["x"].to_numpy(), df["y"].to_numpy()
        )
        rows, cols = np.asarray(rows), np.asarray(cols)
        outside = (rows < 0) | (cols < 0) | (rows >= src.height) | (cols >= src.width)
        if outside.any():
            raise InputDataError(
                f"{int(outside.sum())} labelled point(s) fall outside the map (first id "
                f"{df.loc[outside, 'id'].iloc[0] if 'id' in df else int(np.flatnonzero(outside)[0])}); "
                "give x/y in the map's CRS"
            )
        mapped = np.array(
            [
                int(v[0])
                for v in src.sample(
                    zip(df["x"].to_numpy(), df["y"].to_numpy(), strict=True), indexes=1
                )
            ]
        )
        nodata = src.nodata
    if nodata is not None and (mapped == nodata).any():
        raise InputDataError(
            f"{int((mapped == nodata).sum())} labelled point(s) fall on map nodata; drop them"
        )
    if "map_class" in df and (df["map_class"].to_numpy() != mapped).any():
        raise InputDataError(
            f"{int((df['map_class'].to_numpy() != mapped).sum())} point(s) have a map_class that differs from the "
            "map at their location; assess against the map the sample was drawn from"
        )
    all_classes = sorted(set(classes.tolist()) | set(df["reference"].tolist()))
    full_counts = np.array(
        [counts[classes.tolist().index(c)] if c in classes else 0 for c in all_classes]
    )
    matrix = confusion_counts(mapped, df["reference"].to_numpy(), all_classes)
    result = stratified_estimates(matrix, full_counts, classes=all_classes, pixel_area_m2=area)
    result.update(map=str(map_path), labelled_points=str(labelled_path), n_labelled=len(df))
    return result
