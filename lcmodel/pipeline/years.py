"""Every year of ``embedding.years`` mapped with the one model, then the change between them.

The training stages and the mapping stages of the train year run in ``OUTPUT`` as for a one-year run
(``map.tif`` is the train year's map, assessed against the reference's test part). Every other year is a run
of the mapping stages (:data:`YEAR_STAGES`: the map, its quicklook, its area of applicability, its clean map)
in ``OUTPUT/years/<year>/``, with that year's embedding (``embedding.path``'s ``{year}``, or an index's year)
and the train year's model, labelled points, training table and evaluation. Each year run has its own stage
records, so a year (and each tile of a collection) resumes and is reused on its own: adding a year to the
list maps that year only. There is no assessment for a year without reference data.

``OUTPUT/map_<year>.tif`` and ``confidence_<year>.tif`` name every year's map and confidence (hard links to
the files in the year's folder, or copies where the file system has no links). Then the ``change`` stage
(:mod:`lcmodel.pipeline.change`) compares the years.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

from lcmodel.config import RunConfig, spec_text
from lcmodel.pipeline.artifacts import (
    EmbeddingSource,
    Evaluation,
    LabelledPoints,
    Model,
    Prediction,
    TrainingTable,
)
from lcmodel.pipeline.change import YearMaps
from lcmodel.pipeline.declare import Stage
from lcmodel.pipeline.records import read_record, withdraw
from lcmodel.years import PLACEHOLDER


class YearRun(Protocol):
    """What a year run needs of :class:`lcmodel.pipeline.run.StageRun` (which imports this module)."""

    cfg: RunConfig
    root: Path
    outputs: dict[type[Any], Any]

    def __call__(self, st: Stage, **runtime: Any) -> Any: ...


_R = TypeVar("_R", bound=YearRun)

__all__ = ["available_years", "mapped_years_on_disk", "year_stages", "SHARED_ARTIFACTS",
           "year_dir", "other_years", "run_years", "year_maps",
           "publish_year_files", "YEARS_DIR"]

log = logging.getLogger(__name__)

YEARS_DIR = "years"
#: what a year run takes from the train year's run
SHARED_ARTIFACTS = (Model, LabelledPoints, TrainingTable, Evaluation)
_PUBLISHED = re.compile(r"^(map|confidence)_(\d{4})\.tif$")


def year_stages() -> tuple[Stage, ...]:
    """The stages of a year run: the train year's MAPPING without the assessment (no reference that year)."""
    from lcmodel.pipeline.stages import MAPPING

    return tuple(st for st in MAPPING if st.name != "assess_map")


def year_dir(root: Path | str, year: int) -> Path:
    return Path(root) / YEARS_DIR / str(year)


def other_years(cfg: RunConfig) -> list[int]:
    """The mapped years other than the train year (those mapped in ``OUTPUT/years/<year>/``)."""
    return [y for y in cfg.mapped_years if y != cfg.embedding.year]


def run_years(r: _R, spawn: Callable[[RunConfig], _R]) -> dict[int, _R]:
    """Each other year as a run of the year stages in its folder; ``spawn(cfg)`` makes the year's StageRun.

    ``r`` is the train year's :class:`~lcmodel.pipeline.run.StageRun` (after its mapping stages). The year
    runs, by year.
    """
    from lcmodel.pipeline.stages import runs_in

    runs: dict[int, _R] = {}
    for year in other_years(r.cfg):
        cfg = r.cfg.for_year(year, year_dir(r.root, year))
        ry = spawn(cfg)
        for kind in SHARED_ARTIFACTS:
            ry.outputs[kind] = r.outputs[kind]
        log.info("year %d: mapping %s with the model of %s", year, spec_text(cfg.embedding.spec),
                 r.cfg.embedding.year)
        for st in year_stages():
            if runs_in(st, cfg):
                ry(st)
            else:
                withdraw(st, ry.root)
        runs[year] = ry
    return runs


def year_maps(runs: Mapping[int, YearRun]) -> YearMaps:
    """The maps (and embedding manifests) of every mapped year's run (``StageRun.by_year``), in year order, for
    the ``change`` stage."""
    maps, summaries, embeddings = [], [], []
    for year in sorted(runs):
        outputs = runs[year].outputs
        prediction = outputs[Prediction]
        source = outputs[EmbeddingSource]
        assert isinstance(prediction, Prediction) and isinstance(source, EmbeddingSource)
        maps.append(prediction.map)
        summaries.append(prediction.summary)
        embeddings.append(source.file)
    return YearMaps(maps=tuple(maps), summaries=tuple(summaries), embeddings=tuple(embeddings))


def publish_year_files(root: Path | str, predictions: dict[int, Prediction]) -> list[Path]:
    """``OUTPUT/map_<year>.tif`` and ``confidence_<year>.tif`` for every year (links to the year's files);
    those of years no longer mapped are removed. The paths, in year order."""
    root = Path(root)
    published: list[Path] = []
    for year in sorted(predictions):
        p = predictions[year]
        for name, art in (("map", p.map), ("confidence", p.confidence)):
            if art is None or art.path.suffix.lower() != ".tif":  # a VRT mosaic names its tiles relatively
                continue
            published.append(_link(art.path, root / f"{name}_{year}.tif"))
    for path in root.glob("*_*.tif"):
        m = _PUBLISHED.match(path.name)
        if m and int(m.group(2)) not in predictions:
            path.unlink()
    return published


def _link(src: Path, dst: Path) -> Path:
    if dst.is_file() and os.path.samefile(src, dst):
        return dst
    tmp = dst.with_name(f".{dst.name}.tmp-link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # no hard links here (another file system, FAT): a copy
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return dst


def _year_regex(pattern: str) -> re.Pattern[str]:
    """A glob pattern with ``{year}`` -> a regex whose group ``year`` is the year."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith(PLACEHOLDER, i):
            out.append(r"(?P<year>\d{4})" if "(?P<year>" not in "".join(out) else r"(?P=year)")
            i += len(PLACEHOLDER)
            continue
        ch = pattern[i]
        if ch == "*":
            out.append(r"[^/]*")
        elif ch == "?":
            out.append(r"[^/]")
        elif ch == "[" and (end := pattern.find("]", i + 1)) > i:
            out.append("[" + pattern[i + 1:end].replace("!", "^", 1) + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + r"\Z")


def available_years(spec: Path | tuple[str, ...], *, key: str = "embedding.path") -> list[int]:
    """The years an embedding source holds: the ``{year}`` values whose files exist (a local path or glob),
    or the ``year`` column of an index. Sorted.

    Raises
    ------
    ConfigError
        A remote spec with a placeholder (a server cannot be listed), or a spec with neither a placeholder nor
        an index.
    """
    import glob

    from lcmodel.errors import ConfigError
    from lcmodel.sources import is_remote
    from lcmodel.sources.specs import index_years, is_index

    items = [str(item) for item in (spec if isinstance(spec, tuple) else (spec,))]
    found: set[int] = set()
    for item in items:
        if PLACEHOLDER in item:
            if is_remote(item):
                raise ConfigError(f"embedding.path {item!r} is remote: its years cannot be listed; list them in "
                                  "embedding.years (or use an index with a year column)")
            regex = _year_regex(item)
            for path in glob.glob(item.replace(PLACEHOLDER, "[0-9][0-9][0-9][0-9]")):
                m = regex.match(path)
                if m and 1900 <= int(m.group("year")) <= 2200:
                    found.add(int(m.group("year")))
        elif is_index(item):
            found.update(index_years(item, key=key))
        else:
            raise ConfigError(f"{key} {item!r} names no year: give a {PLACEHOLDER} placeholder (e.g. "
                              f"'aef/{PLACEHOLDER}/*.tif') or an index with a year column to find new years")
    return sorted(found)


def mapped_years_on_disk(output_dir: Path | str, train_year: int | None) -> list[int]:
    """The years a run folder holds a finished map of: the train year (``OUTPUT``) and each
    ``OUTPUT/years/<year>/``, where the map stage's record exists and every file it names is there."""
    from lcmodel.pipeline.stages import STAGES

    root = Path(output_dir)

    def done(folder: Path) -> bool:
        record = read_record(folder, "predict_map")
        if record is None:
            return False
        try:
            files = [a.path for _, a in record.outputs(STAGES["predict_map"], folder).files()]
        except (TypeError, ValueError, KeyError):  # a record of another lcmodel's layout
            return False
        return all(Path(p).is_file() for p in files)

    years = {train_year} if train_year is not None and done(root) else set()
    for folder in (root / "years").glob("[0-9][0-9][0-9][0-9]") if (root / "years").is_dir() else ():
        if done(folder):
            years.add(int(folder.name))
    return sorted(y for y in years if y is not None)
