"""Errors the state machine branches on.

Each class name is the error name that appears in `ErrorEquals` of
`statemachine/cutover.asl.json`: Lambda reports the exception class as `errorType`, and
Step Functions matches on it. Renaming a class is a change of the ASL contract.
"""


class CutoverError(Exception):
    """Base of every error a step raises on purpose; never raised itself."""


class RequestInvalid(CutoverError):
    """The request fails validation; caught by nothing, it fails the execution in its first state."""

    def __init__(self, field: str, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class MgnSelectionNotFound(RequestInvalid):
    """The MGN wave or application a request names does not exist; like RequestInvalid, caught by nothing."""


class MgnSelectionArchived(RequestInvalid):
    """The MGN wave or application a request names is archived; like RequestInvalid, caught by nothing."""


class MgnSelectionEmpty(RequestInvalid):
    """The MGN wave or application a request names holds no live source server; caught by nothing."""


class WaveTooLarge(RequestInvalid):
    """The MGN wave or application holds more servers than one request may; caught by nothing."""


class TargetNotAllowed(CutoverError):
    """A target account outside the allowlist; raised at validation and again before sharing."""

    def __init__(self, account_id: str):
        self.account_id = account_id
        super().__init__(f"target account {account_id} is not in the target account allowlist")


class ServerClaimed(CutoverError):
    """Another execution holds the source server; the server's branch stops without rollback."""

    def __init__(self, source_server_id: str, holder: str):
        self.holder = holder
        super().__init__(f"source server {source_server_id} is held by execution {holder}")


class ServerNotReady(CutoverError):
    """The source server is not in a lifecycle state a cutover can start from; caught by rollback."""


class CutoverJobActive(CutoverError):
    """Rollback met an MGN launch job still running (MGN refuses a lifecycle change then); Roll Back retries it."""


class CutoverLaunchFailed(CutoverError):
    """MGN reports the cutover launch as failed; caught by rollback."""


class ImageFailed(CutoverError):
    """An image (created or copied) ended failed, deregistered or vanished; caught by rollback."""


class ImageNotShareable(CutoverError):
    """An image is under a key that cannot be shared (AWS managed); caught by rollback."""


class RestoredInstanceFailed(CutoverError):
    """The restored instance stopped, terminated or failed its status checks; caught by rollback."""


class AgentCommandFailed(CutoverError):
    """An SSM command for the CloudWatch agent ended in a failed state; caught after finalize."""


class ApprovalRejected(CutoverError):
    """Someone rejected the wave at its approval gate (sent by `approval.reject`); caught by Wait For Approval."""


class WaitTimedOut(CutoverError):
    """A bounded poll ran out of attempts; caught by rollback (or, after finalize, reported)."""


class TransientAwsError(CutoverError):
    """Throttling or a service fault that outlived the SDK's own retries; retried by the ASL."""
