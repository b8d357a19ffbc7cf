"""Logger, Tracer and Metrics shared by every handler, and the one decorator stack they wear."""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

from aws_lambda_powertools import Logger, Metrics
from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

from pipeline.errors import TransientAwsError

logger = Logger()
metrics = Metrics()


def _tracer() -> Any:
    """Powertools' Tracer when AWS calls are traced, else None.

    Building a Tracer imports the X-Ray SDK even when tracing is disabled, and that import
    costs a cold start about as much as boto3 itself; Lambda's active tracing records the
    invocation without it. The stack parameter TraceAwsCalls turns the SDK on.
    """
    if os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").lower() == "true":
        return None
    from aws_lambda_powertools import Tracer

    return Tracer()


tracer = _tracer()

# Error codes that mean "try again later". The SDK has already retried them; the state
# machine retries TransientAwsError with a longer backoff.
TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "Throttled",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
        "InternalError",
        "InternalFailure",
        "InternalServerException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "Unavailable",
    }
)


def step(handler: Callable[[dict, Any], dict]) -> Callable[[dict, Any], dict]:
    """Wrap a handler: Lambda context and the server's ids on every log line, a trace, metrics.

    The per-server state carries `execution` and `server.sourceServerId`; they are appended
    once here so every line a step logs can be found by execution or by server.
    """

    @functools.wraps(handler)
    def wrapper(event: dict, context: Any) -> dict:
        logger.append_keys(execution=_execution(event), source_server_id=_source_server_id(event))
        try:
            return handler(event, context)
        except ClientError as err:
            if not is_transient(err):
                raise
            logger.warning("Transient AWS error", error=str(err))
            raise TransientAwsError(str(err)) from err
        except (ConnectionError, HTTPClientError) as err:
            # A timeout or a dropped connection that outlived the SDK's retries: the call may
            # have been done, and every step finds what an earlier attempt did, so retry it.
            logger.warning("AWS unreachable", error=str(err))
            raise TransientAwsError(f"{type(err).__name__}: {err}") from err

    measured = metrics.log_metrics(wrapper)
    traced = tracer.capture_lambda_handler(measured) if tracer else measured
    return logger.inject_lambda_context(clear_state=True)(traced)


def is_transient(err: ClientError) -> bool:
    code = err.response.get("Error", {}).get("Code", "")
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return code in TRANSIENT_CODES or status >= 500


def _state_of(event: Any) -> dict:
    # Most steps get the server's state as their event; a few get it under "state" beside
    # a parameter that says which image or command they act on.
    if not isinstance(event, dict):
        return {}
    return event["state"] if isinstance(event.get("state"), dict) else event


def _execution(event: Any) -> str | None:
    return _state_of(event).get("execution")


def _source_server_id(event: Any) -> str | None:
    server = _state_of(event).get("server")
    return server.get("sourceServerId") if isinstance(server, dict) else None
