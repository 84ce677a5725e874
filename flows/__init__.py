"""Prefect flows over the lcmodel library, flows/tracking/ (the only MLflow importer) and flows/cli.py (the
`lcmodel` console command: lcmodel.cli's plain commands plus run/demo through the flow, promote, compare).

Defaults for Prefect's settings, applied before any flow module imports prefect; a value the user set wins:
- no server analytics: the temporary server's telemetry heartbeat has nowhere to go offline, and on a fresh
  PREFECT_HOME it races the database migration and prints a "database is locked" traceback;
- a longer start-up allowance for the temporary server on small (2-core) machines;
- no MLflow artifact-download progress bars outside a terminal (they fill logs with carriage returns).
"""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
if not os.isatty(2):
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
