"""The sandbox's event bus: an event put on it starts the state machine when a rule of `template.yaml` matches.

moto's EventBridge cannot deliver to a state machine (PutEvents raises NotImplementedError for such a target),
so the sandbox matches events itself. The rules are the state machine's EventBridgeRule events in
`template.yaml`, with their patterns and their State resolved against the stack's parameters and conditions
(the MGN console rule is DISABLED unless EnableMgnLaunchEvents is "true"). Matching follows EventBridge's
content filtering: every field of the pattern must match; a list of values matches if the event's value (or
any element of an array value) equals one of them or satisfies one of its operators: prefix, suffix,
equals-ignore-case, wildcard, anything-but, exists, numeric. Field names and values are case sensitive.

NOTE: cidr matching, $or and the retry policy and dead-letter queue of a rule are not modelled; an event
that matches a rule is delivered exactly once (EventBridge may deliver it twice).
"""

from __future__ import annotations

import fnmatch
import operator
from dataclasses import dataclass
from typing import Any

from sandbox import template as cfn

ENABLED = "ENABLED"


class PatternError(ValueError):
    """An event pattern EventBridge would refuse (InvalidEventPatternException)."""


@dataclass(frozen=True)
class EventRule:
    """One rule of the stack: its name, its pattern, and whether it is enabled."""

    name: str
    pattern: dict
    state: str

    @property
    def enabled(self) -> bool:
        return self.state == ENABLED


def rules_from_template(template: dict, parameters: dict[str, Any]) -> list[EventRule]:
    """The EventBridge rules of the template's state machines, resolved for these stack parameters."""
    # A rule's pattern and state hold no resource references: parameters and conditions decide them.
    resolver = cfn.Resolver(template, parameters, {}, {})
    rules = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::StateMachine":
            continue
        for event_id, event in (resource["Properties"].get("Events") or {}).items():
            if event.get("Type") not in ("EventBridgeRule", "CloudWatchEvent"):
                continue
            properties = event.get("Properties", {})
            state = resolver.resolve(properties.get("State", ENABLED))
            rules.append(EventRule(f"{logical_id}{event_id}", resolver.resolve(properties["Pattern"]), state))
    return rules



# --- EventBridge pattern matching --------------------------------------------------------------------------


def matches(pattern: dict, event: Any) -> bool:
    """Whether `event` matches the EventBridge event pattern `pattern`."""
    if not isinstance(pattern, dict) or not pattern:
        raise PatternError("an event pattern must be a non-empty JSON object")
    if not isinstance(event, dict):
        return False
    for field, wanted in pattern.items():
        present = field in event
        value = event.get(field)
        if isinstance(wanted, dict):
            if not (present and isinstance(value, dict) and matches(wanted, value)):
                return False
        elif isinstance(wanted, list):
            if not _field_matches(wanted, present, value):
                return False
        else:
            raise PatternError(f"the pattern's value for {field!r} must be an array or an object")
    return True


def _field_matches(wanted: list, present: bool, value: Any) -> bool:
    candidates = value if isinstance(value, list) else [value]
    for item in wanted:
        if isinstance(item, dict) and "exists" in item:
            if bool(item["exists"]) == (present and value is not None and value != []):
                return True
            continue
        if present and any(_value_matches(item, candidate) for candidate in candidates):
            return True
    return False


def _value_matches(item: Any, value: Any) -> bool:
    if not isinstance(item, dict):
        # An exact value: JSON types must agree too ("5" does not match 5).
        return type(item) is type(value) and item == value if item is not None else value is None
    (name, argument), = item.items()
    matcher = _OPERATORS.get(name)
    if matcher is None:
        raise PatternError(f"unknown operator {name!r} in an event pattern")
    return matcher(argument, value)


def _prefix(argument: Any, value: Any) -> bool:
    if isinstance(argument, dict):
        return isinstance(value, str) and value.lower().startswith(str(argument["equals-ignore-case"]).lower())
    return isinstance(value, str) and value.startswith(argument)


def _suffix(argument: Any, value: Any) -> bool:
    if isinstance(argument, dict):
        return isinstance(value, str) and value.lower().endswith(str(argument["equals-ignore-case"]).lower())
    return isinstance(value, str) and value.endswith(argument)


def _anything_but(argument: Any, value: Any) -> bool:
    if isinstance(argument, dict):
        return not any(_value_matches({name: inner}, value) for name, inner in argument.items())
    excluded = argument if isinstance(argument, list) else [argument]
    return not any(_value_matches(item, value) for item in excluded)


def _wildcard(argument: str, value: Any) -> bool:
    # EventBridge's only wildcard is "*"; fnmatch's "?" and "[...]" are taken literally.
    literal = argument.replace("[", "[[]").replace("?", "[?]")
    return isinstance(value, str) and fnmatch.fnmatchcase(value, literal)


_COMPARISONS = {"=": operator.eq, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _numeric(argument: list, value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if len(argument) % 2:
        raise PatternError("numeric matching takes pairs of an operator and a number")
    pairs = zip(argument[0::2], argument[1::2])
    return all(_COMPARISONS[symbol](value, number) for symbol, number in pairs)


_OPERATORS = {
    "prefix": _prefix,
    "suffix": _suffix,
    "equals-ignore-case": lambda argument, value: isinstance(value, str) and value.lower() == argument.lower(),
    "anything-but": _anything_but,
    "wildcard": _wildcard,
    "numeric": _numeric,
}


def matching_rules(rules: list[EventRule], event: dict) -> list[EventRule]:
    """The enabled rules whose pattern the event matches."""
    return [rule for rule in rules if rule.enabled and matches(rule.pattern, event)]
