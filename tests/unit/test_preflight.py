"""The preflight's checks, each passing and failing, against a sandbox world (moto plus the MGN simulator)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator

import pytest
from moto import mock_aws

from pipeline import aws, preflight
from sandbox import aws_rules, mgn
from sandbox.world import DEFAULT_EXTERNAL_ID, DEFAULT_TARGET_ROLE_NAME, FAST_MOTO_ENVIRONMENT, World

TARGET = "222222222222"
SERVER = "s-1a2b3c4d5e6f70001"
OTHER = "s-1a2b3c4d5e6f70002"
REQUEST = {
    "servers": [{
        "sourceServerId": SERVER,
        "target": {"accountId": TARGET, "subnetId": "subnet-0a1b2c3d4e5f60001",
                   "securityGroupIds": ["sg-0a1b2c3d4e5f60001"],
                   "instanceType": "t3.medium", "privateIpAddress": "10.20.1.10",
                   "instanceProfile": "MgnCutoverRestoredInstance"},
    }],
    "options": {"agentConfigParameter": "AmazonCloudWatch-linux"},
}
OPTIONS = {"agentConfigParameter": "AmazonCloudWatch-linux", "installAgent": True, "maxReplicationLagSeconds": 900}


@pytest.fixture
def preflight_of(monkeypatch) -> Iterator:
    """Build a world for a request (and spec) and run one server's preflight in it: {check id: result}."""
    for name, value in {**FAST_MOTO_ENVIRONMENT, "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
                        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "TARGET_ROLE_NAME": DEFAULT_TARGET_ROLE_NAME, "TARGET_ROLE_EXTERNAL_ID": DEFAULT_EXTERNAL_ID,
                        "DEFAULT_INSTANCE_PROFILE": "MgnCutoverRestoredInstance"}.items():
        monkeypatch.setenv(name, value)
    worlds = []

    def run(spec: dict | None = None, request: dict = REQUEST, key_policy_targets: bool = True,
            options: dict | None = None, before=None) -> dict:
        _close(worlds)
        mock = mock_aws()
        mock.start()
        aws.reset()
        key_arn = _sharing_key(key_policy_targets)
        monkeypatch.setenv("SHARING_KEY_ARN", key_arn)
        world = World.for_request(request, spec, sharing_key_arn=key_arn)
        worlds.append((world, mock))
        if before:
            before(world)
        report = preflight.run_server(request["servers"][0], {**OPTIONS, **(options or {})}) if len(
            request["servers"]) == 1 else preflight.run_server(
            {"server": request["servers"][0], "options": {**OPTIONS, **(options or {})},
             "waveServers": request["servers"]})
        return {**{entry["check"]: entry for entry in report["checks"]}, "report": report}

    yield run
    _close(worlds)
    aws.reset()
    mgn.uninstall()
    aws_rules.uninstall()


def _close(worlds: list) -> None:
    while worlds:
        world, mock = worlds.pop()
        world.close()
        mock.stop()


def _sharing_key(with_targets: bool) -> str:
    kms = aws.client("kms")
    key = kms.create_key(Description="sharing key")["KeyMetadata"]
    statements = [{"Sid": "Home", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                   "Action": "kms:*", "Resource": "*"}]
    if with_targets:
        statements.append({"Sid": "Targets", "Effect": "Allow", "Principal": {"AWS": [TARGET]},
                           "Action": ["kms:DescribeKey", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                                      "kms:CreateGrant"], "Resource": "*"})
    kms.put_key_policy(KeyId=key["Arn"], PolicyName="default",
                       Policy=json.dumps({"Version": "2012-10-17", "Statement": statements}))
    return key["Arn"]


def with_target(**changes) -> dict:
    request = copy.deepcopy(REQUEST)
    request["servers"][0]["target"].update(changes)
    return request


def test_a_healthy_server_passes_every_check(preflight_of):
    # GIVEN a server replicating under the sharing key into a target account that has everything
    checks = preflight_of({"defaultServer": {"replicationKey": "sharing-key"}})

    # THEN every check passes, each with a detail and no fix
    assert checks["report"]["passed"] is True and checks["report"]["failedChecks"] == []
    assert [c["check"] for c in checks["report"]["checks"]] == list(preflight.CHECKS)
    assert all(c["result"] == "pass" and c["fix"] is None and c["detail"] for c in checks["report"]["checks"])


@pytest.mark.parametrize("life_cycle", ["READY_FOR_TEST", "CUTOVER"])
def test_a_server_not_ready_for_cutover_fails_with_what_to_do(preflight_of, life_cycle):
    check = preflight_of({"servers": {SERVER: {"lifeCycle": life_cycle}}})[preflight.SOURCE_SERVER_READY]
    assert check["result"] == "fail" and life_cycle in check["detail"]
    assert "ready for cutover" in check["fix"] or "remove it from the wave" in check["fix"]


def test_a_server_mgn_does_not_know_fails_and_skips_what_depends_on_it(preflight_of):
    # GIVEN a request naming a server the world does not hold (it is removed from MGN after building)
    checks = preflight_of(before=lambda world: world.mgn.servers.pop(SERVER))

    assert checks[preflight.SOURCE_SERVER_READY]["result"] == "fail"
    assert "no source server" in checks[preflight.SOURCE_SERVER_READY]["detail"]
    for dependent in (preflight.REPLICATION_HEALTHY, preflight.LAUNCH_DISPOSITION, preflight.REPLICATION_KEY):
        assert checks[dependent]["result"] == "skip"


def test_stalled_replication_fails(preflight_of):
    check = preflight_of({"servers": {SERVER: {"replication": {"state": "STALLED"}}}})[preflight.REPLICATION_HEALTHY]
    assert check["result"] == "fail" and "STALLED" in check["detail"] and "UNSTABLE_NETWORK" in check["detail"]
    assert "TCP 1500" in check["fix"]


def test_replication_lag_above_the_threshold_fails_and_below_passes(preflight_of):
    lagging = {"servers": {SERVER: {"replication": {"lagSeconds": 1200}}}}
    assert preflight_of(lagging)[preflight.REPLICATION_HEALTHY]["result"] == "fail"
    check = preflight_of(lagging, options={"maxReplicationLagSeconds": 1800})[preflight.REPLICATION_HEALTHY]
    assert check["result"] == "pass" and "PT1200S" in check["detail"]


@pytest.mark.parametrize("duration, seconds", [("PT0S", 0), ("PT15M", 900), ("PT1H30M", 5400), ("P1DT2S", 86402),
                                               ("PT0.5S", 0.5), ("one hour", None), ("PT", None)])
def test_iso_8601_durations(duration, seconds):
    assert preflight.duration_seconds(duration) == seconds


def test_a_role_that_does_not_trust_the_pipeline_fails_and_the_target_checks_are_skipped(preflight_of):
    checks = preflight_of({"targetAccounts": {TARGET: {"roleTrustsAccount": "999999999999"}}})
    assert checks[preflight.TARGET_ROLE_ASSUMABLE]["result"] == "fail"
    assert "AccessDenied" in checks[preflight.TARGET_ROLE_ASSUMABLE]["detail"]
    assert "templates/target-account.yaml" in checks[preflight.TARGET_ROLE_ASSUMABLE]["fix"]
    assert checks[preflight.SUBNET_EXISTS]["result"] == "skip"
    assert checks[preflight.AGENT_CONFIG_PARAMETER]["fix"].startswith("fix target-role-assumable first")


def test_a_key_policy_without_the_target_warns_and_a_disabled_key_fails(preflight_of):
    check = preflight_of(key_policy_targets=False)[preflight.SHARING_KEY_USABLE]
    assert check["result"] == "warn" and check["passed"] is True and "TargetAccountIds" in check["fix"]
    assert "does not name account 222222222222" in check["detail"]

    checks = preflight_of(before=lambda world: aws.client("kms").disable_key(KeyId=_env_key().rsplit("/", 1)[1]))
    assert checks[preflight.SHARING_KEY_USABLE]["result"] == "fail"
    assert "Disabled" in checks[preflight.SHARING_KEY_USABLE]["detail"]


def _env_key() -> str:
    import os

    return os.environ["SHARING_KEY_ARN"]


def test_a_missing_subnet_fails_and_skips_the_checks_that_need_it(preflight_of):
    checks = preflight_of({"targetAccounts": {TARGET: {"absent": ["subnet-0a1b2c3d4e5f60001"]}}})
    assert checks[preflight.SUBNET_EXISTS]["result"] == "fail" and "subnet-0a1b2c3d4e5f60001" in checks[
        preflight.SUBNET_EXISTS]["detail"]
    for dependent in (preflight.SECURITY_GROUPS_IN_SUBNET_VPC, preflight.PRIVATE_IP_FREE,
                      preflight.INSTANCE_TYPE_OFFERED):
        assert checks[dependent]["result"] == "skip"


def test_a_missing_security_group_or_one_of_another_vpc_fails(preflight_of):
    missing = preflight_of({"targetAccounts": {TARGET: {"absent": ["sg-0a1b2c3d4e5f60001"]}}})
    assert missing[preflight.SECURITY_GROUPS_IN_SUBNET_VPC]["result"] == "fail"
    assert "no security group sg-0a1b2c3d4e5f60001" in missing[preflight.SECURITY_GROUPS_IN_SUBNET_VPC]["detail"]

    elsewhere = preflight_of({"targetAccounts": {TARGET: {"securityGroupsElsewhere": ["sg-0a1b2c3d4e5f60001"]}}})
    check = elsewhere[preflight.SECURITY_GROUPS_IN_SUBNET_VPC]
    assert check["result"] == "fail" and "not the subnet's" in check["detail"]


def test_a_missing_instance_profile_fails(preflight_of):
    check = preflight_of({"targetAccounts": {TARGET: {"absent": ["MgnCutoverRestoredInstance"]}}})[
        preflight.INSTANCE_PROFILE_EXISTS]
    assert check["result"] == "fail" and "MgnCutoverRestoredInstance" in check["detail"]


def test_a_taken_private_ip_fails_and_a_free_one_passes(preflight_of):
    taken = preflight_of({"targetAccounts": {TARGET: {"takenPrivateIps": ["10.20.1.10"]}}})[preflight.PRIVATE_IP_FREE]
    assert taken["result"] == "fail" and "10.20.1.10 is taken by eni-" in taken["detail"]
    free = preflight_of({"targetAccounts": {TARGET: {"takenPrivateIps": ["10.20.1.11"]}}})[preflight.PRIVATE_IP_FREE]
    assert free["result"] == "pass"


def test_an_address_aws_reserves_in_the_subnet_fails(preflight_of):
    check = preflight_of(request=with_target(privateIpAddress="10.20.1.0"),
                         before=lambda world: None)[preflight.PRIVATE_IP_FREE]
    assert check["result"] == "fail" and "first four" in check["fix"]


def test_an_instance_type_not_offered_in_the_subnets_zone_fails(preflight_of):
    check = preflight_of(request=with_target(instanceType="p4de.24xlarge"))[preflight.INSTANCE_TYPE_OFFERED]
    assert check["result"] == "fail" and "us-east-1a" in check["detail"]


def test_without_a_requested_type_mgns_launch_template_type_is_checked(preflight_of):
    request = copy.deepcopy(REQUEST)
    del request["servers"][0]["target"]["instanceType"]
    check = preflight_of({"servers": {SERVER: {"instanceType": "m5.large"}}}, request=request)[
        preflight.INSTANCE_TYPE_OFFERED]
    assert check["result"] == "pass" and check["detail"] == "m5.large is offered in us-east-1a"


def test_the_wave_must_fit_the_vcpu_quota(preflight_of):
    # GIVEN two servers of 2 vCPUs each bound for an account whose quota is 3 vCPUs
    request = copy.deepcopy(REQUEST)
    second = copy.deepcopy(request["servers"][0])
    second["sourceServerId"], second["target"]["privateIpAddress"] = OTHER, "10.20.1.11"
    del second["target"]["instanceType"]
    request["servers"].append(second)
    check = preflight_of({"targetAccounts": {TARGET: {"vcpuQuota": 3}}}, request=request)[
        preflight.VCPU_QUOTA_HEADROOM]

    # THEN the check counts both servers and asks for the quota the wave needs
    assert check["result"] == "fail" and check["detail"] == "0 vCPUs running + 4 for the wave, quota 3"
    assert "at least 4 vCPUs" in check["fix"]
    assert preflight_of({"targetAccounts": {TARGET: {"vcpuQuota": 4}}}, request=request)[
        preflight.VCPU_QUOTA_HEADROOM]["result"] == "pass"


@pytest.mark.parametrize("instance_type, standard", [("t3.medium", True), ("m5zn.large", True), ("im4gn.large", True),
                                                     ("p4de.24xlarge", False), ("inf2.xlarge", False),
                                                     ("dl1.24xlarge", False), ("u-6tb1.metal", False),
                                                     ("x2iedn.xlarge", False), ("mac2.metal", False)])
def test_which_types_count_against_the_standard_quota(instance_type, standard):
    assert preflight.is_standard(instance_type) is standard


def test_a_missing_agent_parameter_fails_unless_the_agent_is_not_installed(preflight_of):
    spec = {"targetAccounts": {TARGET: {"agentConfigParameter": False}}}
    check = preflight_of(spec)[preflight.AGENT_CONFIG_PARAMETER]
    assert check["result"] == "fail" and "AmazonCloudWatch-linux" in check["fix"]
    assert preflight_of(spec, options={"installAgent": False})[preflight.AGENT_CONFIG_PARAMETER]["result"] == "pass"


def test_a_cutover_instance_launched_stopped_fails(preflight_of):
    check = preflight_of({"servers": {SERVER: {"launchDisposition": "STOPPED"}}})[preflight.LAUNCH_DISPOSITION]
    assert check["result"] == "fail" and "STARTED" in check["fix"]


def test_replication_under_the_default_key_warns_with_the_fix(preflight_of):
    check = preflight_of()[preflight.REPLICATION_KEY]
    assert check["result"] == "warn" and check["passed"] is True
    assert check["fix"] == "set the replication settings' EBS encryption to the sharing key before replication starts"


def test_the_wave_summary_lists_each_failing_check_with_its_fix_and_says_it_is_a_preflight(preflight_of, monkeypatch):
    # GIVEN one server that passes and one whose subnet is missing
    checks = preflight_of({"targetAccounts": {TARGET: {"absent": ["subnet-0a1b2c3d4e5f60001"]}}})
    inbox = _inbox(monkeypatch)
    good = {**checks["report"], "sourceServerId": OTHER, "passed": True, "failedChecks": [], "checks": []}

    # WHEN the wave is summarized
    summary = preflight.summarize("wave-1", "wave-1-preflight", [good, checks["report"]])

    # THEN it counts the servers, names the failing checks with their fixes, and says it was a preflight
    assert (summary["total"], summary["passed"], summary["failed"]) == (2, 1, 1)
    cause = json.loads(summary["cause"])
    assert cause["mode"] == "preflight"
    assert [f["check"] for f in cause["failures"][0]["checks"]] == [
        preflight.SUBNET_EXISTS, preflight.SECURITY_GROUPS_IN_SUBNET_VPC, preflight.PRIVATE_IP_FREE,
        preflight.INSTANCE_TYPE_OFFERED]
    assert all(f["fix"] for f in cause["failures"][0]["checks"])
    (message,) = [json.loads(m["Body"]) for m in aws.client("sqs").receive_message(QueueUrl=inbox)["Messages"]]
    assert message["Subject"].startswith("Preflight of wave wave-1")
    assert "This was a preflight: nothing was changed." in message["Message"]
    assert message["MessageAttributes"]["mode"]["Value"] == "preflight"


def _inbox(monkeypatch) -> str:
    """A queue subscribed to a notification topic the functions are told to publish to."""
    sns, sqs = aws.client("sns"), aws.client("sqs")
    topic = sns.create_topic(Name="notifications")["TopicArn"]
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    monkeypatch.setenv("NOTIFICATION_TOPIC_ARN", topic)
    return queue
