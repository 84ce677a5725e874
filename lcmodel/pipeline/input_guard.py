"""Inputs are never outputs: a run refuses, before any stage runs, an input file it would overwrite.

A stage writes its files into ``output.dir`` under fixed names (:class:`~lcmodel.pipeline.paths.RunPaths`
and the report's, tuning's and bundle's companions), its records into ``output.dir/.lcmodel/`` and the
prediction's resume state into hidden ``.<map>.partial/`` folders. An input (the reference, the embedding,
the class table, the config file) that is one of those files, by name, through a symlink or as a hard link
of an existing one, would be overwritten or read half-written: :func:`refuse_inputs_among_outputs` says so
in one line naming both paths, before anything is written.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from lcmodel.errors import InputFileError
from lcmodel.pipeline.paths import RunPaths

__all__ = ["run_outputs", "refuse_inputs_among_outputs", "refuse_input_as_output"]

#: files written next to RunPaths' ones: point CRSs, the bundle's side file, the report's and tuning's extras
_COMPANIONS = ("reference_points.crs.json", "points_labelled.crs.json", "model.skops.json",
               "classification_report.txt", "confusion_matrix.csv", "confusion_matrix.png",
               "feature_importances.csv", "feature_importances.png", ".lcmodel.lock")
#: per-stage tuning files (best_params_stage1.json, cv_results_stage2.csv, ...), a collection's VRT mosaics
_PATTERNS = ("best_params_stage*.json", "cv_results_stage*.csv", "map_*.vrt", "confidence_*.vrt")
#: folders a tile collection's prediction writes: per-tile outputs, the STAC catalog
_FOLDERS = ("tiles", "stac")
#: folders inside output.dir that belong to the run as a whole
_STATE = ".lcmodel"


def run_outputs(root: Path) -> list[Path]:
    """Every file a run in ``root`` may write under a fixed name (the pattern-named ones: see _PATTERNS)."""
    paths = RunPaths(root)
    fixed = [getattr(paths, name) for name in sorted(vars(RunPaths))
             if isinstance(getattr(RunPaths, name, None), property)]
    return [*fixed, *(root / name for name in _COMPANIONS)]


def _is_output(path: Path, root: Path) -> bool:
    """Whether the resolved ``path`` lies where the run in the resolved ``root`` writes."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        return False
    parts = rel.parts
    if not parts:
        return False
    if parts[0] == _STATE or (parts[0] in _FOLDERS and len(parts) > 1):
        return True
    if any(p.startswith(".") and p.endswith(".partial") for p in parts[:-1]):
        return True
    return len(parts) == 1 and any(fnmatch.fnmatchcase(parts[0], pat) for pat in _PATTERNS)


def _existing(root: Path) -> Iterator[Path]:
    """The run's output files that exist now (for the hard-link check)."""
    for path in run_outputs(root):
        if path.is_file():
            yield path
    if root.is_dir():
        for pat in _PATTERNS:
            yield from root.glob(pat)
        state = root / _STATE
        if state.is_dir():
            yield from (p for p in state.rglob("*") if p.is_file())


def refuse_inputs_among_outputs(inputs: Mapping[str, Path | None], root: Path | str) -> None:
    """Raise InputFileError when an input (``{what: path}``) is, or is a link to, a file the run writes.

    Resolved paths (symlinks) are compared with every output path; the inode of each existing output with
    the input's (hard links).
    """
    root = Path(root)
    real_root = root.resolve()
    outputs = {p.resolve(): p for p in run_outputs(root)}
    for what, given in inputs.items():
        if given is None:
            continue
        path = Path(given)
        real = path.resolve()
        clash = outputs.get(real)
        if clash is None and _is_output(real, real_root):
            clash = real
        if clash is None and path.exists():
            st = os.stat(path)
            clash = next((p for p in _existing(root) if _same_inode(p, st)), None)
        if clash is not None:
            same = f"is {str(clash)!r}, a file" if Path(os.path.abspath(path)) == clash else \
                f"is the same file as {str(clash)!r} (a link), which is a file"
            raise InputFileError(
                f"{what} {str(path)!r} {same} this run writes in output.dir {str(root)!r}: the run would overwrite "
                "it; move the input out of output.dir (or rename it), or choose another output.dir")


def refuse_input_as_output(inputs: Mapping[str, Path | str | None], outputs: Mapping[str, Path | str | None]) -> None:
    """The same check for a command with named outputs (``lcmodel predict --embedding X --out Y``)."""
    for what, given in inputs.items():
        if given is None or not Path(given).exists():
            continue
        st = os.stat(given)
        for kind, out in outputs.items():
            if out is None:
                continue
            if Path(given).resolve() == Path(out).resolve() or _same_inode(Path(out), st):
                raise InputFileError(
                    f"{what} {str(given)!r} is the {kind} {str(out)!r} (the same file): the command would "
                    f"overwrite its own input; give another {kind} path")


def _same_inode(path: Path, st: os.stat_result) -> bool:
    try:
        other = os.stat(path)
    except OSError:
        return False
    return (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino)
