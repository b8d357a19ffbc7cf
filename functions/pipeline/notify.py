"""Publishing to the stack's notification topic, the one way every step does it."""

from __future__ import annotations

from pipeline import aws, config


def publish(subject: str, message: str, attributes: dict[str, str | int]) -> None:
    """Publish a person-readable message; its attributes let subscribers filter (strings and numbers)."""
    aws.client("sns").publish(
        TopicArn=config.notification_topic_arn(),
        # SNS refuses a subject over 100 characters; the message carries everything anyway.
        Subject=subject[:100],
        Message=message,
        MessageAttributes={name: _attribute(value) for name, value in attributes.items()},
    )


def _attribute(value: str | int) -> dict[str, str]:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(f"a message attribute is a string or a number, not {value!r}")
    return {"DataType": "Number" if isinstance(value, int) else "String", "StringValue": str(value)}
