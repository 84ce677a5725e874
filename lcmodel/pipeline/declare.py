"""Declared stages: a stage's signature IS its dependency list, and its cache key is derived from it.

A stage is a plain function decorated with :func:`stage`::

    @stage(about="tune the forest on the training part")
    def tune(settings: TuneSettings, table: TrainingTable, *, out: Path,
             callback: Callback | None = None, progress: Progress | None = None) -> Tuning:

- the first parameter is its settings (a :class:`~lcmodel.pipeline.settings.StageSettings` subclass):
  exactly the config values it uses;
- the other positional parameters are the artifacts it consumes, by type (a parameter defaulting to None
  is optional); it opens no other file;
- keyword-only parameters are how it runs (the output folder, progress callbacks), never what it computes;
- the return annotation is the typed set of files it writes.

:func:`stage_key` hashes the settings' keyed values, the content digests of the inputs, the stage's code
version (the source of its function and of its settings class) and lcmodel's version (the package version
and a digest of the installed lcmodel sources, so an upgrade or an edit invalidates every stage). No list of
keys is kept by hand anywhere.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lcmodel.pipeline.artifacts import Artifacts, digest_of
from lcmodel.pipeline.settings import StageSettings

__all__ = ["Stage", "stage", "stage_key", "lcmodel_version", "StageInput"]


@dataclass(frozen=True)
class StageInput:
    """One consumed artifact: the parameter's name, its type, and whether it may be None."""

    name: str
    type: type[Artifacts]
    optional: bool


@dataclass(frozen=True)
class Stage:
    """A declared stage (see the module docstring); call it like the function it wraps."""

    name: str
    fn: Callable[..., Artifacts]
    settings: type[StageSettings]
    inputs: tuple[StageInput, ...]
    output: type[Artifacts]
    about: str

    def __call__(self, *args: Any, **kwargs: Any) -> Artifacts:
        return self.fn(*args, **kwargs)

    @functools.cached_property
    def code_version(self) -> str:
        """Digest of the stage function's source and of its settings and output classes' sources."""
        parts = [inspect.getsource(self.fn), inspect.getsource(self.settings), inspect.getsource(self.output)]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def stage(about: str) -> Callable[[Callable[..., Any]], Stage]:
    """Declare a stage from its signature (see the module docstring)."""

    def wrap(fn: Callable[..., Any]) -> Stage:
        hints = typing.get_type_hints(fn)
        params = list(inspect.signature(fn).parameters.values())
        if not params or params[0].kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD:
            raise TypeError(f"stage {fn.__name__}: the first parameter must be its settings")
        settings = hints[params[0].name]
        if not (isinstance(settings, type) and issubclass(settings, StageSettings)):
            raise TypeError(f"stage {fn.__name__}: first parameter must be a StageSettings subclass")
        inputs = []
        for p in params[1:]:
            if p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD:
                continue
            art, optional = _artifact_type(hints[p.name])
            if art is None:
                raise TypeError(f"stage {fn.__name__}: input {p.name!r} must be an Artifacts type")
            inputs.append(StageInput(p.name, art, optional or p.default is None))
        output = hints.get("return")
        if not (isinstance(output, type) and issubclass(output, Artifacts)):
            raise TypeError(f"stage {fn.__name__}: return type must be an Artifacts subclass")
        return Stage(fn.__name__, fn, settings, tuple(inputs), output, about)

    return wrap


def _artifact_type(hint: Any) -> tuple[type[Artifacts] | None, bool]:
    """The Artifacts class of a parameter annotation (``X`` or ``X | None``) and whether None is allowed."""
    args = typing.get_args(hint)
    optional = type(None) in args
    candidates = [a for a in args if a is not type(None)] if args else [hint]
    for c in candidates:
        if isinstance(c, type) and issubclass(c, Artifacts):
            return c, optional
    return None, optional


@functools.cache
def lcmodel_version() -> str:
    """lcmodel's version plus a digest of its source files: a different install invalidates every stage."""
    import lcmodel

    root = Path(lcmodel.__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return f"{lcmodel.__version__}+{h.hexdigest()[:12]}"


def stage_key(st: Stage, settings: StageSettings, inputs: Mapping[str, Artifacts | None]) -> str:
    """The cache key of running ``st`` with these settings on these inputs (see the module docstring)."""
    if type(settings) is not st.settings:
        raise TypeError(f"stage {st.name} takes {st.settings.__name__}, got {type(settings).__name__}")
    digests: dict[str, str | None] = {}
    for inp in st.inputs:
        value = inputs.get(inp.name)
        if value is None and not inp.optional:
            raise TypeError(f"stage {st.name} needs its input {inp.name!r}")
        digests[inp.name] = None if value is None else value.digest()
    return digest_of({
        "stage": st.name,
        "code": st.code_version,
        "lcmodel": lcmodel_version(),
        "settings": settings.key_values(),
        "inputs": digests,
    })
