"""Credentials in URIs: find them (a config that holds one is refused), scrub them from whatever is logged, and
hand an environment URI's user info to MLflow's own variables so that MLflow never sees it in the URI.

Credentials belong in the environment, never in a config file: the config is stored with every run (the model
bundle, the MLflow run's params, Prefect's flow-run parameters). MLflow reads them from
``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` (HTTP basic auth) or ``MLFLOW_TRACKING_TOKEN``
(a bearer token). Light on purpose (no mlflow import): the config module uses it.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from urllib.parse import unquote

__all__ = ["CREDENTIAL_VARIABLES_HINT", "check_environment_uri", "scrub_uri", "split_credentials", "uri_secrets"]

#: the fix named by every refusal
CREDENTIAL_VARIABLES_HINT = (
    "put credentials in the environment instead: MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
    "(basic auth) or MLFLOW_TRACKING_TOKEN (a bearer token)"
)

# user info: everything between the scheme and the last '@' of the same token (a password may hold '@' or '/')
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^\s'\"<>]*)@")
# a query parameter whose name says it is a secret (?token=, &auth=, &X-Amz-Signature=, &sig=, ...)
_SECRET_NAME = r"[a-z0-9_.-]*(?:token|auth|key|secret|password|passwd|pwd|sig|signature|credential)[a-z0-9_.-]*"
_QUERY_SECRET = re.compile(rf"(?P<key>[?&;](?P<name>{_SECRET_NAME})=)[^&;#\s'\"<>]*", re.IGNORECASE)


def scrub_uri(text: str) -> str:
    """``text`` (a URI, or a message holding URIs) without user info and without secret query parameters."""
    return _QUERY_SECRET.sub(r"\g<key>***", _USERINFO.sub(r"\g<scheme>***@", text))


def uri_secrets(uri: str) -> list[str]:
    """What in ``uri`` is a credential: ``"user info"`` and ``"query parameter 'NAME'"`` entries (empty: none)."""
    found = ["user info"] if _USERINFO.match(uri.strip()) else []
    found += [f"query parameter {m.group('name')!r}" for m in _QUERY_SECRET.finditer(uri)]
    return found


def split_credentials(uri: str, env: MutableMapping[str, str]) -> str:
    """The HTTP(S) ``uri`` without its user info, which goes to MLflow's variables in ``env`` instead.

    ``user:password@`` (percent-encoded or not) becomes ``MLFLOW_TRACKING_USERNAME`` and
    ``MLFLOW_TRACKING_PASSWORD`` unless either is already set (then, as in MLflow, those win). MLflow then
    sends the same basic auth, and never prints or stores the secret (its "View run at" lines print the
    URI it was given). Other schemes (a database URL) keep their user info: the driver needs it there.
    Raises ConfigError for a secret query parameter of an HTTP(S) URI (MLflow appends its API path to the
    URI, so the parameter would not even reach the server).
    """
    from lcmodel.errors import ConfigError

    m = _USERINFO.match(uri.strip())
    if not uri.lower().startswith(("http://", "https://")):
        return uri
    queries = [s for s in uri_secrets(uri) if s != "user info"]
    if queries:
        raise ConfigError(f"the tracking URI {scrub_uri(uri)} holds a secret ({', '.join(queries)}), which "
                          f"MLflow cannot pass in the URI; remove it and {CREDENTIAL_VARIABLES_HINT}")
    if m is None:
        return uri
    user, _, password = m.group("userinfo").partition(":")
    if "MLFLOW_TRACKING_USERNAME" not in env and "MLFLOW_TRACKING_PASSWORD" not in env:
        env["MLFLOW_TRACKING_USERNAME"] = unquote(user)
        if password:
            env["MLFLOW_TRACKING_PASSWORD"] = unquote(password)
    return m.group("scheme") + uri.strip()[m.end():]


def check_environment_uri(env: MutableMapping[str, str]) -> None:
    """Refuse (ConfigError, one line) an MLFLOW_TRACKING_URI that cannot work: before any compute."""
    uri = env.get("MLFLOW_TRACKING_URI")
    if uri and uri.lower().startswith(("http://", "https://")):
        split_credentials(uri, {})  # checks only: the variables are set when the run opens the store
