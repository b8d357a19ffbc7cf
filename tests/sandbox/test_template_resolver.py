"""The sandbox reads template.yaml's conditions as CloudFormation would."""

import pytest

from sandbox import template as cfn


def resolver(**parameters):
    return cfn.Resolver(cfn.load(), parameters, {}, {})


def test_globals_turn_the_xray_sdk_on_only_when_aws_calls_are_traced():
    # GIVEN the Globals' tracing switch / WHEN resolved for each TraceAwsCalls / THEN CloudFormation's answer
    switch = cfn.load()["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_TRACE_DISABLED"]
    assert resolver().resolve(switch) == "true"
    assert resolver(TraceAwsCalls="true").resolve(switch) == "false"


def test_conditions_combine_equals_not_and_references():
    # GIVEN the template's own conditions / THEN each follows its parameters
    assert resolver().condition("HasNotificationEmail") is False
    assert resolver(NotificationEmail="ops@example.com").condition("HasNotificationEmail") is True
    assert resolver(EnableMgnLaunchEvents="true").condition("MgnLaunchEventsEnabled") is True


def test_an_unknown_condition_is_named():
    with pytest.raises(cfn.TemplateError, match="NoSuchCondition"):
        resolver().resolve({"Fn::If": ["NoSuchCondition", "a", "b"]})
