"""Where each stage writes inside ``output.dir``, and the callback types stages take."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["RunPaths", "Progress", "Callback"]

#: ``progress(done, total)``
Progress = Callable[[int, int], None]
#: ``callback(info)``: one tuning candidate's scores
Callback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class RunPaths:
    """Where each stage writes, inside ``output.dir``."""

    root: Path

    @property
    def embedding_manifest(self) -> Path:
        """The embedding's tiles, as resolved from ``embedding.path`` (what the stages are given)."""
        return self.root / ".lcmodel" / "inputs" / "embedding.json"

    @property
    def reference_mosaic(self) -> Path:
        """A VRT of the reference tiles, when ``reference.path`` names several."""
        return self.root / ".lcmodel" / "inputs" / "reference.vrt"

    @property
    def points(self) -> Path:
        return self.root / "reference_points.csv"

    @property
    def labelled(self) -> Path:
        return self.root / "points_labelled.csv"

    @property
    def class_table(self) -> Path:
        return self.root / "class_table.json"

    @property
    def samples(self) -> Path:
        return self.root / "samples.csv"

    @property
    def sample_stats(self) -> Path:
        return self.root / "sample_stats.json"

    @property
    def training_table(self) -> Path:
        return self.root / "training_table.csv"

    @property
    def tuning(self) -> Path:
        return self.root / "best_params.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def bundle(self) -> Path:
        return self.root / "model.skops"

    @property
    def map(self) -> Path:
        return self.root / "map.tif"

    @property
    def confidence(self) -> Path:
        return self.root / "confidence.tif"

    @property
    def quicklook(self) -> Path:
        return self.root / "map_quicklook.png"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def tuning_summary(self) -> Path:
        return self.root / "tuning_result.json"

    @property
    def prediction(self) -> Path:
        return self.root / "prediction.json"

    # --- accuracy: spatial blocks, test predictions, area-adjusted assessment, uncertainty rasters
    @property
    def spatial_blocks(self) -> Path:
        return self.root / "spatial_blocks.json"

    @property
    def test_predictions(self) -> Path:
        return self.root / "test_predictions.csv"

    @property
    def accuracy_assessment(self) -> Path:
        return self.root / "accuracy_assessment.json"

    @property
    def probabilities(self) -> Path:
        return self.root / "probabilities.tif"

    @property
    def margin(self) -> Path:
        return self.root / "margin.tif"

    @property
    def entropy(self) -> Path:
        return self.root / "entropy.tif"

    # --- the area of applicability
    @property
    def di(self) -> Path:
        return self.root / "di.tif"

    @property
    def aoa(self) -> Path:
        return self.root / "aoa.tif"

    @property
    def aoa_summary(self) -> Path:
        return self.root / "aoa.json"

    # --- a tile collection: one folder of outputs per tile, mosaics, the STAC catalog
    @property
    def tiles(self) -> Path:
        """The per-tile outputs' folder: ``tiles/<tile stem>/`` holds what the run root holds for one map."""
        return self.root / "tiles"

    def tile(self, stem: str) -> RunPaths:
        """Where one tile's map, confidence, uncertainty layers and ``prediction.json`` go."""
        return RunPaths(self.tiles / stem)

    def mosaic_vrt(self, layer: str, crs_tag: str) -> Path:
        """The VRT mosaic of one layer's per-tile maps in one CRS (``map_32631.vrt``)."""
        return self.root / f"{layer}_{crs_tag}.vrt"

    @property
    def stac(self) -> Path:
        """The STAC catalog of the per-tile outputs (``stac/collection.json``, one item per tile)."""
        return self.root / "stac"
