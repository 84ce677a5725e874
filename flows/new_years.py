"""The `landcover-years` Prefect flow: a new year of embeddings maps itself (deployment ``new-years``).

On its schedule it lists the years the embedding source holds (``embedding.path``'s ``{year}`` folders or
files, or an index's ``year`` column: :func:`lcmodel.pipeline.years.available_years`) and the years the output
folder already holds a finished map of. When nothing is new it does nothing: no stage, no MLflow run, one log
line. Otherwise it runs the `landcover` flow (as a subflow) with ``embedding.years`` extended by the new years:
every stage is cached by its key, so the model is NOT retrained (only years were added), the new years are
mapped and the change products are made again.

Which model maps the new year: the config's own, the one its training run produced and registered
(``tracking.register_as``), unchanged since the years before were mapped, so every year's map comes from one
model. When the registry's ``@champion`` of that name is another model (a different bundle digest), the flow
says so in a warning line and still maps with the config's model: mixing models across years would make the
change products compare two classifiers, not two years.
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, get_run_logger

from flows.config import FlowConfig, flow_config
from flows.landcover import landcover
from lcmodel.config import RunConfig
from lcmodel.errors import ConfigError, LcmodelError
from lcmodel.pipeline.years import available_years, mapped_years_on_disk

__all__ = ["landcover_years", "new_years"]


def new_years(cfg: FlowConfig) -> tuple[list[int], list[int], list[int]]:
    """(available years, years already mapped in the output folder, the new ones)."""
    if cfg.embedding.year is None:
        raise ConfigError("embedding.train_year (or embedding.year) is not set: the new-years flow needs the year "
                          "the model is trained on; set embedding.train_year")
    available = available_years(cfg.embedding.path)
    mapped = mapped_years_on_disk(cfg.output.dir, cfg.embedding.year)
    return available, mapped, sorted(set(available) - set(mapped))


@flow(name="landcover-years", log_prints=False)
def landcover_years(config: RunConfig | str) -> dict[str, Any]:
    """Map the years the embedding source holds that the output folder has no map of yet; nothing if none."""
    cfg = flow_config(config)
    logger = get_run_logger()
    available, mapped, new = new_years(cfg)
    if not new:
        logger.info("nothing new: years %s are mapped (the source holds %s)", mapped, available)
        return {"new_years": [], "mapped_years": mapped, "available_years": available}
    years = tuple(sorted({*available, *(cfg.embedding.years or ()), int(cfg.embedding.year or 0)} - {0}))
    logger.info("new year(s) %s: mapping %s with the model trained on %s", new, list(years), cfg.embedding.year)
    extended = cfg.model_copy(update={"embedding": cfg.embedding.model_copy(update={"years": years})})
    result = landcover(extended)
    _check_champion(extended, result, logger)
    return {"new_years": new, "mapped_years": list(years), "available_years": available, **result}


def _check_champion(cfg: FlowConfig, result: dict[str, Any], logger: Any) -> None:
    """A warning line when the registry's champion is not the model that mapped the years."""
    name = cfg.tracking.register_as
    if not name:
        return
    from flows.tracking.registry import alias_bundle
    from lcmodel.io import file_digest

    champion = alias_bundle(name, tracking_uri=cfg.tracking.uri)
    if champion is None:
        return
    ours = file_digest(result["bundle"])
    if champion["bundle_sha256"] and champion["bundle_sha256"] != ours:
        logger.warning("models:/%s@champion is version %s, another model than this config's (version %s) that "
                       "mapped the years; every year's map comes from this config's model", name,
                       champion["version"], result.get("version", "?"))


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.new_years CONFIG``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m flows.new_years CONFIG", file=sys.stderr)
        return 2
    try:
        result = landcover_years(flow_config(argv[0]))
    except LcmodelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"new years: {result['new_years'] or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
