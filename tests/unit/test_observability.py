"""The decorator every handler wears: transient AWS errors become TransientAwsError, and every
log line carries the execution and the source server."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from pipeline.errors import ImageFailed, TransientAwsError
from pipeline.observability import TRANSIENT_CODES, logger, step
from tests.unit.support import EXECUTION, SOURCE_SERVER_ID, server_state


def client_error(code: str, status: int = 400, operation: str = "CreateImage") -> ClientError:
    response = {"Error": {"Code": code, "Message": f"{code} happened"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, operation)


def failing_with(error: Exception):
    @step
    def handler(event, context):
        raise error

    return handler


@pytest.mark.parametrize("code", sorted(TRANSIENT_CODES))
def test_throttling_and_service_faults_become_transient(code, lambda_context):
    # GIVEN a step whose AWS call fails with a "try again later" code
    original = client_error(code)

    # WHEN the step runs
    with pytest.raises(TransientAwsError) as raised:
        failing_with(original)(server_state(), lambda_context)

    # THEN the state machine sees TransientAwsError, carrying the AWS error
    assert raised.value.__cause__ is original
    assert code in str(raised.value)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_any_5xx_is_transient(status, lambda_context):
    # GIVEN an AWS error with a code the list does not know, but a server-side status
    with pytest.raises(TransientAwsError):
        failing_with(client_error("SomethingBroke", status=status))(server_state(), lambda_context)


@pytest.mark.parametrize(
    "code, status",
    [
        ("AccessDenied", 403),
        ("InvalidAMIID.NotFound", 400),
        ("ConditionalCheckFailedException", 400),
        ("NoSuchEntity", 404),
    ],
)
def test_other_client_errors_pass_through_unchanged(code, status, lambda_context):
    # GIVEN an AWS error retrying cannot fix
    original = client_error(code, status=status)

    # WHEN the step runs
    with pytest.raises(ClientError) as raised:
        failing_with(original)(server_state(), lambda_context)

    # THEN the very same error reaches Lambda, so its class names it in the ASL
    assert raised.value is original
    assert not isinstance(raised.value, TransientAwsError)


def test_pipeline_errors_pass_through_unchanged(lambda_context):
    # GIVEN a step that raises one of the pipeline's named errors
    original = ImageFailed("image ami-1 is failed")

    # WHEN / THEN it reaches Lambda as it is
    with pytest.raises(ImageFailed) as raised:
        failing_with(original)(server_state(), lambda_context)
    assert raised.value is original


def test_handler_result_is_returned(lambda_context):
    @step
    # GIVEN a step that returns / WHEN it runs / THEN its result passes through the decorator
    def handler(event, context):
        return {"ready": True, "seen": event["server"]["sourceServerId"]}

    assert handler(server_state(), lambda_context) == {"ready": True, "seen": SOURCE_SERVER_ID}


def logging_step():
    @step
    def handler(event, context):
        logger.info("Image available", image_id="ami-0123456789abcdef0")
        return {}

    return handler


def test_log_lines_carry_execution_server_and_lambda_context(lambda_context, log_lines):
    # GIVEN a step that logs one line
    # WHEN it runs on a server's state
    logging_step()(server_state(), lambda_context)

    # THEN the line is JSON with the message, its keys, the ids and the Lambda context
    [line] = [line for line in log_lines() if line.get("message") == "Image available"]
    assert line["level"] == "INFO"
    assert line["execution"] == EXECUTION
    assert line["source_server_id"] == SOURCE_SERVER_ID
    assert line["image_id"] == "ami-0123456789abcdef0"
    assert line["function_name"] == lambda_context.function_name
    assert line["function_request_id"] == lambda_context.aws_request_id


def test_ids_are_read_from_a_nested_state(lambda_context, log_lines):
    # GIVEN a step whose event holds the state under "state", beside its parameter
    event = {"slot": "image", "state": server_state()}

    # WHEN it runs
    logging_step()(event, lambda_context)

    # THEN the ids still reach the line
    [line] = [line for line in log_lines() if line.get("message") == "Image available"]
    assert (line["execution"], line["source_server_id"]) == (EXECUTION, SOURCE_SERVER_ID)


def test_ids_do_not_leak_into_the_next_invocation(lambda_context, log_lines):
    # GIVEN a warm Lambda that ran for one server
    handler = logging_step()
    handler(server_state(), lambda_context)
    log_lines()

    # WHEN it next runs for a wave-level event with no server
    handler({"execution": "wave-2-run", "wave": "wave-2", "results": []}, lambda_context)

    # THEN the earlier server's id is not on the new line
    [line] = [line for line in log_lines() if line.get("message") == "Image available"]
    assert line["execution"] == "wave-2-run"
    assert line.get("source_server_id") != SOURCE_SERVER_ID


def test_transient_error_is_logged_as_a_warning(lambda_context, log_lines):
    # GIVEN a throttled call
    with pytest.raises(TransientAwsError):
        failing_with(client_error("RequestLimitExceeded"))(server_state(), lambda_context)

    # THEN one warning says so, with the server's ids
    [warning] = [line for line in log_lines() if line.get("level") == "WARNING"]
    assert warning["message"] == "Transient AWS error"
    assert "RequestLimitExceeded" in warning["error"]
    assert warning["source_server_id"] == SOURCE_SERVER_ID


@pytest.mark.parametrize(
    "error",
    [
        EndpointConnectionError(endpoint_url="https://ec2.us-east-1.amazonaws.com/"),
        ConnectTimeoutError(endpoint_url="https://kms.us-east-1.amazonaws.com/"),
        ReadTimeoutError(endpoint_url="https://ssm.us-east-1.amazonaws.com/"),
    ],
    ids=["endpoint unreachable", "connect timeout", "read timeout"],
)
def test_an_unreachable_service_is_transient(error, lambda_context):
    # GIVEN a step whose AWS call could not reach the service, after the SDK's own retries
    # WHEN / THEN the state machine sees TransientAwsError, naming the kind of failure
    with pytest.raises(TransientAwsError, match=type(error).__name__) as raised:
        failing_with(error)(server_state(), lambda_context)
    assert raised.value.__cause__ is error
