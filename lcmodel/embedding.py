"""How to read an embedding raster: its nodata rule, band names and de-quantization.

One :class:`NodataRule` per raster, detected from the file, decides which pixels are valid and turns raw
blocks into float32 features. Extraction (training) and prediction use the same rule, and the model bundle
stores it, so a pixel is treated the same way at both ends.

Supported, from the file:
- float rasters (Earth Engine exports): a declared nodata value, NaN, and all-zero vectors (a unit-length
  embedding is never all zero) are nodata;
- AlphaEarth int8 COGs: -128 is nodata (all bands at once); other values are de-quantized as
  ``(v / 127.5) ** 2 * sign(v)`` AFTER masking (else -128 becomes ~1.008);
- any other integer raster with a declared nodata value (e.g. Landsat uint16 with 65535).
A pixel is nodata when ANY band is nodata or NaN: a model cannot be applied to a partial vector.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from rasterio.io import DatasetReader

__all__ = ["NodataRule", "band_names", "AEF_INT8_NODATA"]

AEF_INT8_NODATA = -128


@dataclass(frozen=True)
class NodataRule:
    """Which pixels of an embedding raster are nodata, and how raw values become features.

    Attributes
    ----------
    dtype : the raster's data type (numpy name).
    nodata : declared nodata value (any band equal to it makes the pixel nodata), or None.
    zero_vector : an all-zero vector is nodata (float rasters).
    dequantize : "aef_int8" for AlphaEarth int8 rasters, else "none".
    """

    dtype: str
    nodata: float | None = None
    zero_vector: bool = False
    dequantize: Literal["none", "aef_int8"] = "none"

    @classmethod
    def detect(cls, src: DatasetReader, override: float | None = None) -> NodataRule:
        """The rule for an open raster; ``override`` replaces the file's declared nodata value."""
        dtype = np.dtype(src.dtypes[0]).name
        declared = override if override is not None else src.nodata
        if dtype == "int8":
            return cls(
                dtype=dtype,
                nodata=float(declared) if declared is not None else float(AEF_INT8_NODATA),
                zero_vector=False,
                dequantize="aef_int8",
            )
        is_float = np.dtype(dtype).kind == "f"
        nodata = None if declared is None or (is_float and np.isnan(declared)) else float(declared)
        return cls(dtype=dtype, nodata=nodata, zero_vector=is_float)

    def valid_mask(self, block: np.ndarray) -> np.ndarray:
        """Boolean (rows, cols) mask of valid pixels of a raw (bands, rows, cols) block."""
        if block.ndim != 3:
            raise ValueError(f"expected a (bands, rows, cols) block, got shape {block.shape}")
        invalid = np.zeros(block.shape[1:], dtype=bool)
        if self.nodata is not None:
            invalid |= (block == self.nodata).any(axis=0)
        if block.dtype.kind == "f":
            invalid |= np.isnan(block).any(axis=0)
            if self.zero_vector:
                invalid |= ~block.any(axis=0)
        return ~invalid

    def missing(self, values: np.ndarray) -> np.ndarray:
        """Boolean mask, the shape of ``values``: each value that is the declared nodata value or NaN (band by
        band; the all-zero-vector rule is a per-pixel one, :meth:`valid_mask`)."""
        missing = np.zeros(values.shape, dtype=bool)
        if self.nodata is not None:
            missing |= values == self.nodata
        if values.dtype.kind == "f":
            missing |= np.isnan(values)
        return missing

    def to_features(self, values: np.ndarray) -> np.ndarray:
        """Raw values (..., bands) of VALID pixels -> float32 features, C-contiguous."""
        out = np.asarray(values, dtype=np.float32)
        if self.dequantize == "aef_int8":
            out = np.square(out / np.float32(127.5)) * np.sign(out)
        return np.ascontiguousarray(out, dtype=np.float32)

    def block_features(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A raw (bands, rows, cols) block -> (valid mask (rows, cols), features (n_valid, bands))."""
        mask = self.valid_mask(block)
        pixels = block[:, mask].T  # (n_valid, bands)
        return mask, self.to_features(pixels)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodataRule:
        return cls(**data)

    def describe(self) -> str:
        parts = []
        if self.nodata is not None:
            parts.append(f"value {self.nodata:g}")
        if np.dtype(self.dtype).kind == "f":
            parts.append("NaN")
        if self.zero_vector:
            parts.append("all-zero vectors")
        rule = ", ".join(parts) or "none"
        extra = "; de-quantized as (v/127.5)^2*sign(v)" if self.dequantize == "aef_int8" else ""
        return f"{self.dtype}, nodata: {rule}{extra}"


def band_names(src: DatasetReader) -> list[str]:
    """Band names from the raster's band descriptions (e.g. A00..A63), else band_1..band_N."""
    descs = list(src.descriptions or [])
    if len(descs) == src.count and all(descs) and len(set(descs)) == src.count:
        return [str(d) for d in descs]
    return [f"band_{i}" for i in range(1, src.count + 1)]

