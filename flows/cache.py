"""Prefect caching of the declared stages: the task's cache key IS the stage's key (lcmodel.pipeline.declare).

:class:`StageCachePolicy` derives a task's key from its inputs exactly as the plain runner does: the digest of
the stage's settings, the content digests of the artifacts it consumes, the stage's code version and
lcmodel's version. Combined with Prefect's ``TASK_SOURCE`` (the task wrapper's own source), results and
cache records persisted in ``OUTPUT/.lcmodel/``.

Prefect trusts its record of a key; lcmodel trusts a result only if the files still hold what was recorded.
So before each call the flow asks :func:`lcmodel.pipeline.cached` whether the stage's recorded outputs are
valid for this key; when they are not (a file truncated, altered, deleted, or overwritten by a run with
another config), the task runs with ``refresh_cache=True`` and replaces Prefect's record under the same key.
The task body itself reuses valid recorded outputs too (:func:`lcmodel.pipeline.run_or_reuse`), so a folder
copied elsewhere, whose Prefect records do not apply, re-runs nothing either.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.cache_policies import TASK_SOURCE, CachePolicy

from lcmodel.pipeline import STAGES, stage_key

__all__ = ["StageCachePolicy", "stage_cache_policy", "state_dir"]


@dataclass
class StageCachePolicy(CachePolicy):
    """The cache key of one declared stage, from the task's ``settings`` and artifact inputs."""

    stage: str = ""

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        st = STAGES[self.stage]
        key = stage_key(st, inputs["settings"], {i.name: inputs.get(i.name) for i in st.inputs})
        # salted with the output folder: Prefect's records name the folder they were made in, so a copied or
        # moved folder must not find them (its stage records still make the stages reusable, see below)
        folder = hashlib.sha256(str(Path(inputs["out"]).resolve()).encode()).hexdigest()[:12]
        return f"{st.name}-{key}-{folder}"


def state_dir(root: Path | str) -> Path:
    """Where the flow persists task results and cache records: ``OUTPUT/.lcmodel``."""
    return Path(root) / ".lcmodel"


def stage_cache_policy(stage: str, root: Path | str | None = None) -> CachePolicy:
    """``TASK_SOURCE + StageCachePolicy(stage)``, its records in ``OUTPUT/.lcmodel/cache`` when ``root`` is given."""
    policy = TASK_SOURCE + StageCachePolicy(stage=stage)
    return policy.configure(key_storage=state_dir(root) / "cache") if root is not None else policy
