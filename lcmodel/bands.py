"""Which bands of an embedding raster a model uses: those named in ``embedding.bands``, or every band that
carries data.

A pixel is nodata when ANY band is nodata (:class:`~lcmodel.embedding.NodataRule`), so one band that is
nodata everywhere (the water-vapour bands of a hyperspectral raster, -32768 in every pixel) makes every pixel
nodata. At extraction the values of the sampled pixels decide (:func:`choose_bands`):

- ``embedding.bands`` null: a band that is nodata (the declared value, or NaN) in every sampled pixel, or
  constant over the sampled valid pixels, is dropped with a :class:`~lcmodel.errors.DataWarning` naming it;
  the nodata rule then applies to the bands used only. When every band is nodata at every sampled point the
  points, not the bands, are the problem: nothing is dropped (and extraction finds no valid pixel).
- ``embedding.bands`` set (names such as ``"A00"`` or 1-based indices, mixed freely): exactly those bands are
  used, in the raster's order, and nothing is detected. A selected band that is nodata in every sampled
  pixel is an error (it would make every pixel nodata); a selected constant band only gets a warning.

The bands used travel as a :class:`BandSelection` (names AND 1-based source indexes): into the samples and
training table columns, the model bundle (``band_indexes``), and prediction, which reads only those bands.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from lcmodel.embedding import NodataRule
from lcmodel.errors import ConfigError, DataWarning, InputDataError

__all__ = [
    "BandSpec",
    "DroppedBand",
    "BandSelection",
    "check_band_list",
    "resolve_bands",
    "choose_bands",
    "band_list_text",
    "bands_note",
    "MIN_PIXELS_CONSTANT",
]

#: One entry of ``embedding.bands``: a band name (``"A00"``, ``"band_3"``) or a 1-based band index.
BandSpec = str | int

#: A band is judged constant only over at least this many distinct valid sampled pixels (quantized values, e.g.
#: AlphaEarth int8, often agree at two or three pixels by chance; at ten, practically never).
MIN_PIXELS_CONSTANT = 10

SelectedBy = Literal["all", "detection", "embedding.bands"]


@dataclass(frozen=True)
class DroppedBand:
    """A band left out because it carries nothing: ``reason`` "nodata" (nodata or NaN in every sampled pixel)
    or "constant" (the same ``value`` in every sampled valid pixel)."""

    index: int
    name: str
    reason: Literal["nodata", "constant"]
    value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        why = "nodata in every sampled pixel" if self.reason == "nodata" else (
            f"constant ({self.value:g}) in every sampled valid pixel")
        return {"index": self.index, "name": self.name, "reason": self.reason, "value": self.value, "why": why}


@dataclass(frozen=True)
class BandSelection:
    """The bands of an embedding raster that are used, and those left out.

    Attributes
    ----------
    indexes : 1-based band indexes in the source raster, in raster order.
    names : their names (band descriptions, else ``band_<index>``).
    n_source : bands of the source raster.
    selected_by : ``"all"`` (every band), ``"detection"`` (bands carrying nothing dropped) or
        ``"embedding.bands"`` (named by the user).
    dropped : the bands detection left out, with why.
    """

    indexes: tuple[int, ...]
    names: tuple[str, ...]
    n_source: int
    selected_by: SelectedBy = "all"
    dropped: tuple[DroppedBand, ...] = ()

    @classmethod
    def every(cls, names: Sequence[str]) -> BandSelection:
        """All bands of a raster with these band names."""
        return cls(tuple(range(1, len(names) + 1)), tuple(names), len(names))

    @property
    def is_all(self) -> bool:
        """Every band of the source, in order."""
        return self.indexes == tuple(range(1, self.n_source + 1))

    def read_indexes(self) -> list[int] | None:
        """The ``indexes`` argument of ``DatasetReader.read``: None (every band) or the bands used."""
        return None if self.is_all else list(self.indexes)

    def to_dict(self) -> dict[str, Any]:
        """The record of the run's outputs (``sample_stats.json``, ``metrics.json``)."""
        return {"n_source_bands": self.n_source, "n_used": len(self.indexes), "selected_by": self.selected_by,
                "used": list(self.names), "used_indexes": list(self.indexes),
                "dropped": [d.to_dict() for d in self.dropped]}


def band_list_text(indexes: Sequence[int], names: Sequence[str] | None = None, *, limit: int = 12) -> str:
    """``"57, 58 (band_57, band_58)"``: indexes (runs of 3 or more as ``a-b``) and, if given, names (the first
    and last few when there are more than ``limit``)."""
    runs: list[str] = []
    i = 0
    idx = list(indexes)
    while i < len(idx):
        j = i
        while j + 1 < len(idx) and idx[j + 1] == idx[j] + 1:
            j += 1
        runs.append(f"{idx[i]}-{idx[j]}" if j - i >= 2 else ", ".join(str(v) for v in idx[i:j + 1]))
        i = j + 1
    text = ", ".join(runs)
    if names is not None:
        shown = list(names)
        if len(shown) > limit:
            shown = [*shown[: limit // 2], "...", *shown[-(limit // 2):]]
        text += f" ({', '.join(shown)})"
    return text


def _raster_bands_text(names: Sequence[str]) -> str:
    shown = ", ".join(names) if len(names) <= 8 else f"{', '.join(names[:3])} ... {names[-1]}"
    return f"{len(names)} bands: {shown}"


def check_band_list(value: Any) -> tuple[BandSpec, ...] | None:
    """``embedding.bands`` as given in a config: null, one band, or a list of distinct names and 1-based indices
    (pydantic's before-validator of the key; a ValueError becomes the config error)."""
    if value is None:
        return None
    if isinstance(value, str | int) and not isinstance(value, bool):
        value = [value]  # one band
    if not isinstance(value, list | tuple) or not value:
        raise ValueError("give a non-empty list of band names or 1-based band indices, or null for every band")
    seen: set[BandSpec] = set()
    for v in value:
        if isinstance(v, bool) or not isinstance(v, str | int) or (isinstance(v, str) and not v.strip()):
            raise ValueError(f"entry {v!r} is neither a band name nor a 1-based band index")
        if isinstance(v, int) and v < 1:
            raise ValueError(f"band index {v} is not allowed; indices are 1-based (the first band is 1)")
        if v in seen:
            raise ValueError(f"band {v!r} is listed twice; list each band once")
        seen.add(v)
    return tuple(value)


def resolve_bands(requested: Sequence[BandSpec], names: Sequence[str], *, raster: str) -> tuple[int, ...]:
    """The 1-based indexes of ``embedding.bands`` entries in a raster with these band names, in raster order.

    Raises
    ------
    ConfigError
        An entry is not a band of the raster (unknown name, index out of range), or two entries name the same
        band; the message names the value and the raster's bands.
    """
    if len(requested) == 0:
        raise ConfigError("embedding.bands is empty; list at least one band, or set it to null for every band")
    seen: dict[int, BandSpec] = {}
    by_name = {n: i for i, n in enumerate(names, start=1)}
    for spec in requested:
        if isinstance(spec, bool) or not isinstance(spec, str | int):
            raise ConfigError(f"embedding.bands entry {spec!r} is neither a band name nor a 1-based band index")
        if isinstance(spec, int):
            if not 1 <= spec <= len(names):
                raise ConfigError(
                    f"embedding.bands entry {spec} is out of range: embedding raster {raster!r} has "
                    f"{_raster_bands_text(names)}; give 1-based indices 1..{len(names)} or band names"
                )
            index = spec
        elif spec in by_name:
            index = by_name[spec]
        else:
            quoted = f" (a quoted number is a name: write {spec} unquoted for an index)" if spec.isdigit() else ""
            raise ConfigError(
                f"embedding.bands entry {spec!r} is not a band of embedding raster {raster!r} "
                f"({_raster_bands_text(names)}); give its band names or 1-based indices 1..{len(names)}{quoted}"
            )
        if index in seen:
            raise ConfigError(
                f"embedding.bands names band {index} ({names[index - 1]}) twice (as {seen[index]!r} and "
                f"{spec!r}); list each band once"
            )
        seen[index] = spec
    return tuple(sorted(seen))


def _dead_bands(raw: np.ndarray, rule: NodataRule, indexes: Sequence[int], names: Sequence[str]
                ) -> tuple[list[DroppedBand], list[DroppedBand]]:
    """(nodata bands, constant bands) among the columns of ``raw`` (distinct sampled pixels x bands)."""
    if raw.shape[0] == 0:
        return [], []
    all_missing = rule.missing(raw).all(axis=0)
    if all_missing.all():  # every sampled pixel is nodata in every band: the points, not the bands
        return [], []
    nodata = [DroppedBand(indexes[j], names[j], "nodata") for j in np.flatnonzero(all_missing).tolist()]
    keep = np.flatnonzero(~all_missing).tolist()
    kept = raw[:, keep]
    valid = rule.valid_mask(kept.T[:, :, None])[:, 0]
    constant: list[DroppedBand] = []
    if int(valid.sum()) >= MIN_PIXELS_CONSTANT:
        values = kept[valid]
        same = (values == values[0]).all(axis=0)
        constant = [DroppedBand(indexes[keep[j]], names[keep[j]], "constant", float(values[0, j]))
                    for j in np.flatnonzero(same).tolist()]
    return nodata, constant


def _text(bands: Sequence[DroppedBand]) -> str:
    what = "band" if len(bands) == 1 else "bands"
    return f"{what} {band_list_text([b.index for b in bands], [b.name for b in bands])}"


def choose_bands(
    raw: np.ndarray,
    rule: NodataRule,
    names: Sequence[str],
    indexes: Sequence[int],
    *,
    n_source: int,
    selected: bool,
    raster: str,
) -> BandSelection:
    """The bands to use, from the raw values of the distinct sampled pixels inside the raster.

    Parameters
    ----------
    raw : (pixels, bands) raw values (as stored) of the distinct sampled pixels, one column per band read.
    rule : the raster's nodata rule.
    names, indexes : name and 1-based source index of each column of ``raw``.
    n_source : bands of the source raster.
    selected : the columns are the user's ``embedding.bands`` (check them) rather than every band (detect).
    raster : the raster's path, for messages.

    Raises
    ------
    InputDataError
        A selected band is nodata in every sampled pixel while the others are not.

    Warns
    -----
    DataWarning
        Bands dropped (detection), or selected bands that are constant.
    """
    nodata, constant = _dead_bands(raw, rule, indexes, names)
    if selected:
        if nodata:
            raise InputDataError(
                f"embedding.bands selects {_text(nodata)}, nodata in every sampled pixel of {raster!r}: with "
                f"{'it' if len(nodata) == 1 else 'them'} no pixel is valid (a pixel is nodata when any band used "
                f"is); remove {'it' if len(nodata) == 1 else 'them'} from embedding.bands, or set embedding.bands "
                "to null to drop such bands automatically"
            )
        if constant:
            warnings.warn(
                f"embedding.bands selects {_text(constant)}, constant in every sampled valid pixel of {raster!r}: "
                "it carries nothing for the model; leave it out of embedding.bands",
                DataWarning, stacklevel=3,
            )
        return BandSelection(tuple(indexes), tuple(names), n_source, "embedding.bands")
    dropped = sorted([*nodata, *constant], key=lambda b: b.index)
    if not dropped:
        return BandSelection(tuple(indexes), tuple(names), n_source)
    gone = {b.index for b in dropped}
    used = [(i, n) for i, n in zip(indexes, names, strict=True) if i not in gone]
    parts = []
    if nodata:
        parts.append(f"{_text(nodata)} {'is' if len(nodata) == 1 else 'are'} nodata in every sampled pixel")
    if constant:
        parts.append(f"{_text(constant)} {'is' if len(constant) == 1 else 'are'} constant in every sampled valid "
                     "pixel")
    warnings.warn(
        f"embedding {raster!r}: {' and '.join(parts)}; dropped: the model uses {len(used)} of {n_source} bands, "
        "and a pixel is nodata when any of those is (set embedding.bands to choose the bands yourself)",
        DataWarning, stacklevel=3,
    )
    return BandSelection(tuple(i for i, _ in used), tuple(n for _, n in used), n_source, "detection",
                         tuple(dropped))


def bands_note(record: dict[str, Any] | None) -> str | None:
    """A sentence for the report about the bands used, from :meth:`BandSelection.to_dict` (None: every band)."""
    if not record or record.get("selected_by", "all") == "all":
        return None
    n_used, n_source = record["n_used"], record["n_source_bands"]
    if record["selected_by"] == "embedding.bands":
        return (f"The model uses {n_used} of the embedding's {n_source} bands, selected by embedding.bands "
                f"({band_list_text(record['used_indexes'], record['used'])}); prediction reads only those.")
    reasons = []
    for reason, what in (("nodata", "nodata in every sampled pixel"), ("constant", "constant in every sampled "
                                                                                   "valid pixel")):
        bands = [d for d in record["dropped"] if d["reason"] == reason]
        if bands:
            reasons.append(f"band(s) {band_list_text([d['index'] for d in bands], [d['name'] for d in bands])} "
                           f"were {what}")
    return (f"The model uses {n_used} of the embedding's {n_source} bands: {'; '.join(reasons)}, so they were "
            "dropped. A pixel is nodata when any band used is; prediction reads only the bands used.")
