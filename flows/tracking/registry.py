"""The MLflow model registry: ``models:/`` references, downloading a registered bundle, promotion.

The alias :data:`CHAMPION` marks the model version in production; :func:`promotion_decision` says whether a
new version beats it (same test table, higher test macro-F1) and :func:`promote` moves an alias by hand.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from flows.tracking.stores import require_existing_store
from flows.tracking.uris import resolve_uri, scrub_uri
from lcmodel.errors import LcmodelError

__all__ = [
    "CHAMPION",
    "TrackingLookupError",
    "RegistryArgumentError",
    "check_alias",
    "check_version",
    "download_registered_bundle",
    "is_models_uri",
    "promote",
    "promotion_decision",
]

#: the bundle's file name among a registered model's artifacts (``artifacts/model.skops``)
BUNDLE_FILE = "model.skops"
#: the alias that marks the model version in production
CHAMPION = "champion"
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")


class TrackingLookupError(LcmodelError, LookupError):
    """A registered model, version, alias or experiment does not exist in the tracking store."""


class RegistryArgumentError(LcmodelError, ValueError):
    """An alias or version that the registry cannot take (reserved, badly formed)."""


_ALIAS = re.compile(r"^[\w-]{1,255}$")


def check_alias(alias: str) -> str:
    """``alias`` if the registry accepts it as an alias name, else a one-line RegistryArgumentError."""
    if alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
        raise RegistryArgumentError(
            f"alias {alias!r} is reserved by MLflow ('latest' and v<number> name versions); choose another alias, "
            f"e.g. --alias {CHAMPION}")
    if not _ALIAS.match(alias):
        raise RegistryArgumentError(
            f"alias {alias!r} is not a valid alias name; use 1 to 255 letters, digits, '_' or '-' (e.g. --alias "
            f"{CHAMPION})")
    return alias


def check_version(version: str) -> str:
    """``version`` if it is a registry version number (a positive integer), else a RegistryArgumentError."""
    if not re.fullmatch(r"[1-9]\d*", str(version)):
        raise RegistryArgumentError(
            f"model version {version!r} is not a version number; give a positive integer such as 1 (the versions "
            "are listed in the MLflow UI)")
    return str(version)


def is_models_uri(ref: str | Path) -> bool:
    """True for a registry reference (``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``)."""
    return str(ref).startswith("models:/")


def _parse_models_uri(ref: str) -> tuple[str, str | None, str | None]:
    m = _MODELS_URI.match(ref)
    if m is None:
        raise TrackingLookupError(
            f"model reference {ref!r} is not a registry URI; give models:/NAME@ALIAS or models:/NAME/VERSION"
        )
    return m["name"], m["alias"], m["version"]


def _not_found(exc: MlflowException) -> bool:
    return exc.error_code == "RESOURCE_DOES_NOT_EXIST"


def _version_by_alias(client: MlflowClient, name: str, alias: str) -> Any | None:
    """The version that ``alias`` points at, or None (stores differ in the error they raise)."""
    version = client.get_registered_model(name).aliases.get(alias)
    return None if version is None else client.get_model_version(name, str(version))


def _model_version(client: MlflowClient, name: str, alias: str | None, version: str | None) -> Any:
    """The ModelVersion for an alias or a version number, or a one-line TrackingLookupError."""
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if not _not_found(exc):
            raise
        known = sorted(m.name for m in client.search_registered_models(max_results=50))
        raise TrackingLookupError(
            f"registered model {name!r} does not exist in {scrub_uri(client.tracking_uri)} (registered: "
            f"{', '.join(known) or 'none'}); check the name and MLFLOW_TRACKING_URI"
        ) from None
    if alias is not None:
        mv = _version_by_alias(client, name, alias)
        if mv is None:
            aliases = ", ".join(f"{a}=v{v}" for a, v in sorted(model.aliases.items())) or "none"
            raise TrackingLookupError(
                f"registered model {name!r} has no alias {alias!r} (aliases: {aliases}); set it with "
                f"`lcmodel promote {name} VERSION --alias {alias}`"
            )
        return mv
    try:
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        if not _not_found(exc):
            raise
        raise TrackingLookupError(
            f"registered model {name!r} has no version {version}; list its versions in the MLflow UI "
            "or give an alias (models:/NAME@champion)"
        ) from None


def download_registered_bundle(ref: str, dest: Path | str,
                               tracking_uri: str | None = None) -> tuple[Path, dict[str, str]]:
    """Download the bundle of a registered model version into ``dest``, verified against the tracking store.

    The downloaded ``model.skops`` must have the SHA-256 that training recorded in the tracking store (the
    param ``bundle.sha256`` of the version's run; else the version's tag ``lcmodel.bundle_sha256``): a bundle
    swapped inside the artifact store is refused in one line before anything reads it. Pass
    ``info["bundle_sha256"]`` to :func:`lcmodel.model_io.load_bundle` (``expected_sha256``) when loading it.

    Parameters
    ----------
    ref : ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``.
    dest : an existing folder (e.g. a temporary one) for the model's files.
    tracking_uri : the MLflow store; default MLFLOW_TRACKING_URI, else ``sqlite:///<cwd>/mlflow.db``.

    Returns
    -------
    (path of model.skops, info)
        info holds ``model_name``, ``model_version``, ``model_uri`` (``ref``), ``model_run_id``, ``model_id``
        (MLflow's logged-model id, "" when unknown) and ``bundle_sha256`` (the recorded digest).

    Raises
    ------
    TrackingLookupError
        No such model, version or alias; not an lcmodel model; no digest recorded for it.
    ModelBundleError
        The downloaded bundle's SHA-256 differs from the recorded one.
    """
    from lcmodel.model_io import verify_bundle_hash

    uri, _ = resolve_uri(tracking_uri)
    name, alias, version = _parse_models_uri(ref)
    require_existing_store(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    mv = _model_version(client, name, alias, version)
    expected = _recorded_sha256(client, mv)
    if not expected:
        raise TrackingLookupError(
            f"models:/{name}/{mv.version} has no bundle SHA-256 recorded at training (run param bundle.sha256), "
            "so its bundle cannot be verified; register models with the landcover flow (tracking.register_as)"
        )
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{name}/{mv.version}", dst_path=str(dest), tracking_uri=uri, registry_uri=uri
    )
    bundle = Path(local) / "artifacts" / BUNDLE_FILE
    if not bundle.is_file():
        raise TrackingLookupError(
            f"models:/{name}/{mv.version} is not an lcmodel model of this version (no artifacts/{BUNDLE_FILE}); "
            "register models with the landcover flow (tracking.register_as)"
        )
    verify_bundle_hash(bundle, expected)
    info = {"model_name": name, "model_version": str(mv.version), "model_uri": ref,
            "model_run_id": mv.run_id or "", "model_id": _logged_model_id(mv), "bundle_sha256": expected}
    return bundle, info


def _recorded_sha256(client: MlflowClient, mv: Any) -> str:
    """The bundle digest training recorded: the run's param ``bundle.sha256``, else the version's tag."""
    if mv.run_id:
        try:
            sha = client.get_run(mv.run_id).data.params.get("bundle.sha256")
        except MlflowException as exc:
            if not _not_found(exc):
                raise
            sha = None
        if sha:
            return str(sha)
    return str((mv.tags or {}).get("lcmodel.bundle_sha256") or "")


def _logged_model_id(mv: Any) -> str:
    """MLflow 3's logged-model id of a version ("" if none); some stores leave ``model_id`` empty."""
    if getattr(mv, "model_id", None):
        return str(mv.model_id)
    source = str(mv.source or "")
    return source.removeprefix("models:/") if re.match(r"^models:/m-[0-9a-f]+$", source) else ""


def promotion_decision(client: MlflowClient, name: str, version: str, alias: str = CHAMPION) -> str:
    """Whether ``version`` should get ``alias``: one line starting with 'promoted' or 'not promoted'.

    Compares the test macro-F1 of the two versions' training runs, only when both were measured on the
    same test table (same ``lcmodel.training_table_sha256`` tag; the table holds the split).
    """
    new = client.get_model_version(name, version)
    new_run = client.get_run(str(new.run_id))
    new_f1 = new_run.data.metrics.get("test_macro_f1")
    if new_f1 is None:
        return f"not promoted: version {version} has no test macro-F1 (run {new.run_id})"
    current = _version_by_alias(client, name, alias)
    if current is None:
        return f"promoted: no {alias} before; test macro-F1 {new_f1:.4f}"
    if str(current.version) == str(version):
        return f"not promoted: version {version} is already {alias}"
    old_run = client.get_run(current.run_id)
    old_f1 = old_run.data.metrics.get("test_macro_f1")
    new_sha = new_run.data.tags.get("lcmodel.training_table_sha256", "")
    old_sha = old_run.data.tags.get("lcmodel.training_table_sha256", "")
    figures = f"test macro-F1 {new_f1:.4f} vs {alias} v{current.version}'s " + (
        f"{old_f1:.4f}" if old_f1 is not None else "none")
    if old_f1 is None or not new_sha or new_sha != old_sha:
        return (f"not promoted: not the same test table (training table {new_sha[:12] or '?'} vs "
                f"{old_sha[:12] or '?'}), {figures}; compare by hand, then `lcmodel promote {name} "
                f"{version} --alias {alias}`")
    if new_f1 > old_f1:
        return f"promoted: {figures}"
    return f"not promoted: {figures} (not better)"


def promote(name: str, version: str, alias: str = CHAMPION, tracking_uri: str | None = None) -> dict[str, str]:
    """Point ``alias`` at ``version`` of registered model ``name`` (by hand: no comparison).

    Returns ``{"name", "version", "alias", "previous"}`` (previous: the version the alias pointed at, or "").
    """
    version, alias = check_version(version), check_alias(alias)
    uri, _ = resolve_uri(tracking_uri)
    require_existing_store(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    _model_version(client, name, None, version)  # one-line errors for a wrong name or version
    previous = _version_by_alias(client, name, alias)
    client.set_registered_model_alias(name, alias, str(version))
    note = f"promoted to {alias} by hand" + (f" (was v{previous.version})" if previous is not None else "")
    client.set_model_version_tag(name, str(version), "lcmodel.promotion", note)
    return {"name": name, "version": str(version), "alias": alias,
            "previous": str(previous.version) if previous is not None else ""}


def alias_bundle(name: str, alias: str = CHAMPION, tracking_uri: str | None = None) -> dict[str, str] | None:
    """The version ``models:/NAME@alias`` points at and its recorded bundle SHA-256; None when the model or the
    alias does not exist (nothing registered yet)."""
    uri, _ = resolve_uri(tracking_uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        mv = _version_by_alias(client, name, alias)
    except MlflowException as exc:
        if _not_found(exc):
            return None
        raise
    if mv is None:
        return None
    return {"version": str(mv.version), "bundle_sha256": _recorded_sha256(client, mv)}
