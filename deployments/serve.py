"""Serve both lcmodel flows from this process (no work pool, no worker): ``flow.serve`` for a local trial.

    PREFECT_API_URL=http://127.0.0.1:4200/api python deployments/serve.py --config demo/demo.yaml

A running Prefect server is needed for the schedule (``prefect server start --host 127.0.0.1``). The
deployments are ``landcover/train-served`` (the nightly cron) and ``landcover-predict/predict-served``;
trigger them with ``prefect deployment run landcover/train-served``. Stop with Ctrl-C.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prefect import serve

from flows.landcover import landcover
from flows.predict import landcover_predict


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="demo/demo.yaml", help="run config of the training deployment")
    parser.add_argument("--cron", default="0 2 * * *", help="training schedule (cron, UTC)")
    parser.add_argument("--model", default="models:/lcmodel-demo@champion", help="model of the prediction")
    parser.add_argument("--embedding", default="demo/embedding.tif", help="raster of the prediction")
    parser.add_argument("--out", default="demo/predicted/map.tif", help="map written by the prediction")
    args = parser.parse_args(argv)
    train = landcover.to_deployment(
        name="train-served", cron=args.cron, parameters={"config": str(Path(args.config).resolve())},
        tags=["lcmodel", "training"],
    )
    predict = landcover_predict.to_deployment(
        name="predict-served",
        parameters={"model": args.model, "embedding": str(Path(args.embedding).resolve()),
                    "out": str(Path(args.out).resolve())},
        tags=["lcmodel", "prediction"],
    )
    serve(train, predict)


if __name__ == "__main__":
    main()
