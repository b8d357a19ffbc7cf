"""AWS refusals the sandbox adds to moto: EC2 arguments, SSM documents and commands, role trust, key access,
and EventBridge pattern matching."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.kms.models import kms_backends
from sandbox_helpers import MIGRATION, TARGET, poll

from sandbox import aws_rules, clock, events
from sandbox.world import DEFAULT_EXTERNAL_ID, DEFAULT_TARGET_ROLE_NAME

UNKNOWN_IMAGE = "ami-0123456789abcdef0"


def code_of(raised: pytest.ExceptionInfo) -> str:
    return raised.value.response["Error"]["Code"]


@pytest.fixture
def network(world):
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    other_vpc = ec2.create_vpc(CidrBlock="10.2.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.1.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="app", Description="app", VpcId=vpc)["GroupId"]
    stray = ec2.create_security_group(GroupName="stray", Description="stray", VpcId=other_vpc)["GroupId"]
    return ec2, subnet, group, stray


def run(ec2, subnet: str, groups: list[str], **extra) -> dict:
    return ec2.run_instances(ImageId=UNKNOWN_IMAGE, MinCount=1, MaxCount=1, SubnetId=subnet,
                             SecurityGroupIds=groups, **extra)["Instances"][0]


def test_ami_names_must_be_well_formed(network):
    ec2, subnet, group, _ = network
    instance_id = run(ec2, subnet, [group])["InstanceId"]
    # WHEN an image is named with a character AMI names do not allow, or too long
    for name in ("cutover:s-1", "x" * 129):
        with pytest.raises(ClientError) as raised:
            ec2.create_image(InstanceId=instance_id, Name=name)
        # THEN EC2 refuses the name
        assert code_of(raised) == "InvalidAMIName.Malformed"
    assert ec2.create_image(InstanceId=instance_id, Name="cutover (s-1) [a]/b.c-d'e@f_g")["ImageId"]


def test_run_instances_checks_groups_addresses_and_profile(network):
    ec2, subnet, group, stray = network
    cases = [
        ({"groups": [stray]}, "InvalidParameter", "belong to different networks"),
        ({"PrivateIpAddress": "10.9.9.9"}, "InvalidParameterValue", "does not fall within the subnet"),
        ({"IamInstanceProfile": {"Name": "nope"}}, "InvalidParameterValue", "Invalid IAM Instance Profile name"),
    ]
    for extra, code, words in cases:
        groups = extra.pop("groups", [group])
        # WHEN an instance is launched with that mistake
        with pytest.raises(ClientError) as raised:
            run(ec2, subnet, groups, **extra)
        # THEN EC2 refuses it with its own error code
        assert (code_of(raised), words in str(raised.value)) == (code, True)

    # AND an address already taken in the subnet is in use
    run(ec2, subnet, [group], PrivateIpAddress="10.1.1.20")
    with pytest.raises(ClientError) as raised:
        run(ec2, subnet, [group], PrivateIpAddress="10.1.1.20")
    assert code_of(raised) == "InvalidIPAddress.InUse"


def test_status_checks_initialize_before_ok(network):
    ec2, subnet, group, _ = network
    aws_rules.pacing.instance_boot_seconds, aws_rules.pacing.status_check_seconds = 40, 180
    instance_id = run(ec2, subnet, [group])["InstanceId"]

    # WHEN the status is read once the instance runs, just before its checks have passed, and when they have
    seen = []
    for seconds in (40, 179, 1):
        clock.active().sleep(seconds)
        seen.append(ec2.describe_instance_status(InstanceIds=[instance_id])["InstanceStatuses"][0][
            "InstanceStatus"]["Status"])

    # THEN the checks initialize for their 180 s, then pass
    assert seen == ["initializing", "initializing", "ok"]


def test_send_command_checks_the_document_and_its_parameters(world):
    ssm = boto3.client("ssm")
    # WHEN a command names a document nobody owns, or parameters that do not fit
    with pytest.raises(ClientError) as raised:
        ssm.send_command(DocumentName="AWS-InstallCloudWatch", InstanceIds=["i-0123456789abcdef0"])
    assert code_of(raised) == "InvalidDocument"
    for parameters in ({"action": ["Install"]}, {"action": ["Install"], "name": ["x"], "colour": ["red"]}):
        with pytest.raises(ClientError) as raised:
            ssm.send_command(DocumentName="AWS-ConfigureAWSPackage", InstanceIds=["i-0123456789abcdef0"],
                             Parameters=parameters)
        # THEN SSM refuses it
        assert code_of(raised) == "InvalidParameters"


def test_the_target_role_admits_only_the_pipeline_roles_of_its_stack(world):
    role_arn = f"arn:aws:iam::{TARGET}:role/{DEFAULT_TARGET_ROLE_NAME}"
    sts = boto3.client("sts")
    outsiders = [f"arn:aws:iam::{MIGRATION}:role/other-team/Deployer", f"arn:aws:iam::999999999999:role/mgn-cutover/"
                 "mgn-cutover/Function"]
    for outsider in outsiders:
        # WHEN a role outside the pipeline stack's path, or of another account, assumes the target role
        with aws_rules.acting_as(outsider), pytest.raises(ClientError) as raised:
            sts.assume_role(RoleArn=role_arn, RoleSessionName="rehearsal", ExternalId=DEFAULT_EXTERNAL_ID)
        # THEN STS refuses, naming the caller
        assert code_of(raised) == "AccessDenied"
        assert outsider.rsplit("/", 1)[1] in str(raised.value)
    with aws_rules.acting_as(f"arn:aws:iam::{MIGRATION}:role/mgn-cutover/mgn-cutover/ShareFunctionRole"):
        admitted = sts.assume_role(RoleArn=role_arn, RoleSessionName="rehearsal", ExternalId=DEFAULT_EXTERNAL_ID)
    assert admitted["AssumedRoleUser"]["Arn"].startswith(f"arn:aws:sts::{TARGET}:assumed-role/")


def test_a_disabled_key_or_a_revoked_grant_takes_access_away(world):
    kms = boto3.client("kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    key = f"arn:aws:kms:us-east-1:{MIGRATION}:key/{key_id}"
    grant = kms.create_grant(KeyId=key_id, GranteePrincipal=f"arn:aws:iam::{TARGET}:role/{DEFAULT_TARGET_ROLE_NAME}",
                             Operations=["Decrypt", "DescribeKey", "CreateGrant"])["GrantId"]
    # GIVEN the target may read under the key through the grant (not write: no GenerateDataKey*)
    assert aws_rules.key_usable(key, TARGET, "us-east-1")
    assert not aws_rules.key_usable(key, TARGET, "us-east-1", use="write")

    # WHEN the key is disabled, THEN access is gone; enabled again, it is back
    kms.disable_key(KeyId=key_id)
    assert not aws_rules.key_usable(key, TARGET, "us-east-1")
    kms.enable_key(KeyId=key_id)
    assert aws_rules.key_usable(key, TARGET, "us-east-1")

    # WHEN the grant is revoked, THEN access is gone
    kms.revoke_grant(KeyId=key_id, GrantId=grant)
    assert not aws_rules.key_usable(key, TARGET, "us-east-1")
    assert kms_backends[MIGRATION]["us-east-1"].keys[key_id].grants == {}


@pytest.mark.parametrize(("pattern", "event", "expected"), [
    ({"source": ["aws.mgn"]}, {"source": "aws.mgn"}, True),
    ({"source": ["aws.mgn"]}, {"source": "aws.ec2"}, False),
    ({"detail": {"state": ["CUTOVER_LAUNCH_SUCCEEDED"]}}, {"detail": {"state": "TEST_LAUNCH_SUCCEEDED"}}, False),
    ({"detail": {"state": [{"prefix": "CUTOVER_"}]}}, {"detail": {"state": "CUTOVER_LAUNCH_FAILED"}}, True),
    ({"detail": {"state": [{"anything-but": ["TEST_LAUNCH_SUCCEEDED"]}]}}, {"detail": {"state": "X"}}, True),
    ({"detail": {"job-id": [{"exists": False}]}}, {"detail": {"state": "X"}}, True),
    ({"detail": {"job-id": [{"exists": True}]}}, {"detail": {"state": "X"}}, False),
    ({"detail": {"n": [{"numeric": [">", 0, "<=", 5]}]}}, {"detail": {"n": 5}}, True),
    ({"detail": {"n": [{"numeric": [">", 0, "<=", 5]}]}}, {"detail": {"n": "5"}}, False),
    ({"resources": [{"suffix": "/s-1"}]}, {"resources": ["arn:a", "arn:b/s-1"]}, True),
    ({"source": ["AWS.MGN"]}, {"source": "aws.mgn"}, False),
])
def test_event_patterns_match_as_eventbridge_matches(pattern, event, expected):
    assert events.matches(pattern, event) is expected


def test_template_rules_and_the_mgn_rule_condition():
    from sandbox import template as cfn

    template = cfn.load()
    # WHEN the rules are read with the parameter's default, and with it enabled
    off = {rule.name: rule.state for rule in events.rules_from_template(template, {})}
    on = {rule.name: rule.state for rule in events.rules_from_template(template, {"EnableMgnLaunchEvents": "true"})}
    # THEN the MGN console rule follows EnableMgnLaunchEvents, the custom one is always on
    assert off == {"CutoverStateMachineCutoverRequested": "ENABLED",
                   "CutoverStateMachineMgnCutoverLaunched": "DISABLED"}
    assert on["CutoverStateMachineMgnCutoverLaunched"] == "ENABLED"


def test_pending_images_and_launches_take_longer_for_larger_disks_at_the_worlds_speed(aws):
    from sandbox.world import World

    # GIVEN a world converting at 512 MiB/s and snapshotting at 128 MiB/s, with a small and a large server
    with World({"speed": {"mgnLaunchSeconds": 600, "conversionMiBps": 512, "snapshotMiBps": 128},
                "servers": {"s-00000000000000001": {"diskSizesGiB": [8]},
                            "s-00000000000000002": {"diskSizesGiB": [100, 450]}}}) as world:
        mgn = boto3.client("mgn")
        ec2 = boto3.client("ec2")
        seconds = {}
        for server_id in ("s-00000000000000001", "s-00000000000000002"):
            world.add_source_server(server_id)
            started = world.clock.now()
            job_id = mgn.start_cutover(sourceServerIDs=[server_id])["job"]["jobID"]

            # WHEN the cutover job, then an image of its instance, are polled every 10 s until done
            _, calls = poll(lambda: mgn.describe_jobs(filters={"jobIDs": [job_id]})["items"][0],
                            lambda job: job["status"] == "COMPLETED", attempts=400, every=10)
            launched = world.clock.now()
            instance_id = world.mgn.servers[server_id].launched_instance_id
            image_id = ec2.create_image(InstanceId=instance_id, Name=f"cutover {server_id}")["ImageId"]
            poll(lambda: ec2.describe_images(ImageIds=[image_id])["Images"][0],
                 lambda image: image["State"] == "available", attempts=800, every=10)
            seconds[server_id] = (launched - started, world.clock.now() - launched)

    # THEN each took its disks' time at the world's speed, noticed at the next 10 s poll: the launch 600 s plus
    # 16 s (8 GiB) or 1100 s (550 GiB) converting, the image 64 s or 4400 s of snapshots
    assert seconds == {"s-00000000000000001": (620, 70), "s-00000000000000002": (1700, 4400)}


def test_commands_take_time_and_a_world_can_make_one_fail(world):
    from test_aws_rules import launch_in_target

    from sandbox_helpers import pipeline_client

    # GIVEN a managed instance, commands that take time, and a world where package installs fail
    aws_rules.pacing.command_start_seconds, aws_rules.pacing.command_seconds = 2, 30
    aws_rules.pacing.command_failures = {"AWS-ConfigureAWSPackage": "Failed to download manifest"}
    _, instance_id = launch_in_target()
    ssm = pipeline_client("ssm", TARGET)
    clock.active().sleep(aws_rules.pacing.instance_boot_seconds + aws_rules.pacing.ssm_registration_seconds)
    ssm.describe_instance_information()
    command_id = ssm.send_command(InstanceIds=[instance_id], DocumentName="AWS-ConfigureAWSPackage",
                                  Parameters={"action": ["Install"], "name": ["AmazonCloudWatchAgent"]})[
        "Command"]["CommandId"]

    # WHEN the invocation is read at once, after 2 s, after 31 s and after 32 s
    seen = []
    for seconds in (0, 2, 29, 1):
        clock.active().sleep(seconds)
        try:
            seen.append(ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)["Status"])
        except ClientError as err:
            seen.append(err.response["Error"]["Code"])

    # THEN it does not exist yet, then runs, then fails with the agent's words
    assert seen == ["InvocationDoesNotExist", "InProgress", "InProgress", "Failed"]
    final = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
    assert final["StandardErrorContent"] == "Failed to download manifest"
