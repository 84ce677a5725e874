#!/usr/bin/env bash
# `make deploy-local`: a trial of the deployments on this machine, in the foreground; Ctrl-C stops it all.
# Starts a Prefect server on 127.0.0.1, creates the process pool, deploys deployments/prefect.yaml, starts a
# worker, triggers the training run then the prediction run, and keeps server and worker up (UI on
# http://127.0.0.1:$PREFECT_PORT) until Ctrl-C. It stops only the processes it started.
set -euo pipefail
set -m  # background jobs get their own process group, so that cleanup stops their children too
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
export PATH="$VENV/bin:$PATH"  # the worker and `mlflow models serve` need the venv first on PATH
PORT=${PREFECT_PORT:-4200}
export PREFECT_HOME=${PREFECT_HOME:-$PWD/.prefect-local}
export PREFECT_API_URL="http://127.0.0.1:$PORT/api"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-sqlite:///$PWD/mlflow.db}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ -f demo/demo.yaml ] || python -c "from lcmodel.demo import make_demo_data; print(make_demo_data('demo'))"
[ -f demo-years/demo.yaml ] || python -c "from lcmodel.demo_years import make_demo_years; print(make_demo_years('demo-years', size=128, n_points=1500))"

prefect server start --host 127.0.0.1 --port "$PORT" > "$PREFECT_HOME.server.log" 2>&1 &
pids+=($!)
python - <<PY
import time, urllib.request
for _ in range(120):
    try:
        urllib.request.urlopen("$PREFECT_API_URL/health", timeout=2); break
    except OSError:
        time.sleep(1)
else:
    raise SystemExit("the Prefect server did not answer in 120 s; see $PREFECT_HOME.server.log")
PY
echo "Prefect server: http://127.0.0.1:$PORT (log: $PREFECT_HOME.server.log)"

prefect work-pool create lcmodel-pool --type process --overwrite
prefect deploy --all --prefect-file deployments/prefect.yaml --no-prompt
prefect worker start --pool lcmodel-pool --type process &
pids+=($!)

prefect deployment run landcover/train --watch
prefect deployment run landcover-predict/predict --watch
echo "Both runs finished. MLflow: mlflow ui --backend-store-uri $MLFLOW_TRACKING_URI --host 127.0.0.1"
echo "Server and worker keep running (the nightly schedule included); Ctrl-C stops them."
wait
