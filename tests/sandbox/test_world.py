"""A World holds what a cutover request refers to, in every account, and its inventory tells what they hold."""

from __future__ import annotations

import ipaddress
import json

import boto3
import pytest
from sandbox_helpers import MIGRATION, OTHER_TARGET, TARGET, pipeline_client, poll

from sandbox import aws_rules, mgn
from sandbox.world import (
    DEFAULT_AGENT_CONFIG_PARAMETER,
    DEFAULT_INSTANCE_PROFILE,
    DEFAULT_PIPELINE_ROLE_ARNS,
    NoMockActive,
    World,
    WorldSpecError,
    plan_subnets,
    plan_vpc,
)

WEB, DB, BATCH = "s-0123456789abcdefA", "s-0123456789abcdefB", "s-0123456789abcdefC"
TARGET_KEY_ARN = f"arn:aws:kms:us-east-1:{OTHER_TARGET}:key/11111111-2222-3333-4444-555555555555"

REQUEST = {
    "wave": "wave-1",
    "servers": [
        {"sourceServerId": WEB, "target": {
            "accountId": TARGET, "subnetId": "subnet-0a1b2c3d4e5f60718", "securityGroupIds": ["sg-0a1b2c3d4e5f60718"],
            "privateIpAddress": "10.20.1.15", "kmsKeyId": "alias/target-ebs", "instanceType": "t3.large"}},
        {"sourceServerId": DB, "target": {
            "accountId": OTHER_TARGET, "subnetId": "subnet-11112222",
            "securityGroupIds": ["sg-11112222", "sg-33334444"], "instanceProfile": "DatabaseProfile",
            "kmsKeyId": TARGET_KEY_ARN}},
        {"sourceServerId": BATCH, "target": {
            "accountId": OTHER_TARGET, "subnetId": "subnet-55556666", "securityGroupIds": ["sg-11112222"],
            "privateIpAddress": "10.30.7.9"}},
    ],
    "options": {"agentConfigParameter": "AmazonCloudWatch-wave1"},
}


@pytest.fixture
def built(aws):
    with World.for_request(REQUEST) as world:
        yield world


def subnet(ec2, subnet_id: str) -> dict:
    return ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]


# --- what for_request builds ---------------------------------------------------------------------------------


def test_every_requested_server_is_a_healthy_source_server_ready_for_cutover(built):
    # WHEN the migration account's MGN is asked for its source servers
    servers = boto3.client("mgn").describe_source_servers(filters={})["items"]

    # THEN each requested server is there, ready for cutover, replicating continuously
    assert sorted(s["sourceServerID"] for s in servers) == sorted([WEB, DB, BATCH])
    assert {s["lifeCycle"]["state"] for s in servers} == {"READY_FOR_CUTOVER"}
    assert {s["dataReplicationInfo"]["dataReplicationState"] for s in servers} == {"CONTINUOUS"}
    assert built.migration_account == MIGRATION and built.target_accounts == [TARGET, OTHER_TARGET]


def test_target_networks_have_the_requested_ids_and_cidrs_that_hold_the_ips(built):
    # WHEN the target accounts' networks are described the way the pipeline would see them
    first = pipeline_client("ec2", TARGET)
    second = pipeline_client("ec2", OTHER_TARGET)
    web = subnet(first, "subnet-0a1b2c3d4e5f60718")
    db, batch = subnet(second, "subnet-11112222"), subnet(second, "subnet-55556666")

    # THEN each subnet exists with its id, its CIDR holds the requested IP, inside its VPC's CIDR blocks
    assert ipaddress.ip_address("10.20.1.15") in ipaddress.ip_network(web["CidrBlock"])
    assert ipaddress.ip_address("10.30.7.9") in ipaddress.ip_network(batch["CidrBlock"])
    assert db["VpcId"] == batch["VpcId"]
    vpc = second.describe_vpcs(VpcIds=[db["VpcId"]])["Vpcs"][0]
    blocks = [ipaddress.ip_network(b["CidrBlock"]) for b in vpc["CidrBlockAssociationSet"]]
    for cidr in (db["CidrBlock"], batch["CidrBlock"]):
        assert any(ipaddress.ip_network(cidr).subnet_of(block) for block in blocks)
    assert not ipaddress.ip_network(db["CidrBlock"]).overlaps(ipaddress.ip_network(batch["CidrBlock"]))

    # AND the security groups exist with their ids in the subnets' VPC
    groups = second.describe_security_groups(GroupIds=["sg-11112222", "sg-33334444"])["SecurityGroups"]
    assert {g["VpcId"] for g in groups} == {db["VpcId"]}
    assert first.describe_security_groups(GroupIds=["sg-0a1b2c3d4e5f60718"])["SecurityGroups"][0]["VpcId"] == web[
        "VpcId"]


def test_a_restored_instance_can_be_launched_with_the_requested_placement(built):
    ec2 = pipeline_client("ec2", TARGET)

    # WHEN the pipeline launches into the requested subnet, IP, groups and the default instance profile
    instance = ec2.run_instances(
        ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1, InstanceType="t3.large",
        SubnetId="subnet-0a1b2c3d4e5f60718", PrivateIpAddress="10.20.1.15",
        SecurityGroupIds=["sg-0a1b2c3d4e5f60718"], IamInstanceProfile={"Name": DEFAULT_INSTANCE_PROFILE},
    )["Instances"][0]

    # THEN the instance has exactly that placement
    described = ec2.describe_instances(InstanceIds=[instance["InstanceId"]])["Reservations"][0]["Instances"][0]
    assert (described["SubnetId"], described["PrivateIpAddress"]) == ("subnet-0a1b2c3d4e5f60718", "10.20.1.15")
    assert [g["GroupId"] for g in described["SecurityGroups"]] == ["sg-0a1b2c3d4e5f60718"]
    assert described["IamInstanceProfile"]["Arn"].endswith(f"instance-profile/{DEFAULT_INSTANCE_PROFILE}")


def test_instance_profiles_carry_the_ssm_and_cloudwatch_agent_policies(built):
    # WHEN the profiles of each target account are read
    for account, profile in ((TARGET, DEFAULT_INSTANCE_PROFILE), (OTHER_TARGET, "DatabaseProfile"),
                             (OTHER_TARGET, DEFAULT_INSTANCE_PROFILE)):
        iam = built.client("iam", account)
        roles = iam.get_instance_profile(InstanceProfileName=profile)["InstanceProfile"]["Roles"]

        # THEN each has one role with both AWS managed policies attached
        assert len(roles) == 1
        attached = iam.list_attached_role_policies(RoleName=roles[0]["RoleName"])["AttachedPolicies"]
        assert sorted(p["PolicyArn"] for p in attached) == ["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
                                                            "arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy"]


def test_target_keys_exist_under_the_names_the_request_gives(built):
    # WHEN the requested keys are looked up in their accounts, by alias and by ARN
    by_alias = pipeline_client("kms", TARGET).describe_key(KeyId="alias/target-ebs")["KeyMetadata"]
    by_arn = pipeline_client("kms", OTHER_TARGET).describe_key(KeyId=TARGET_KEY_ARN)["KeyMetadata"]

    # THEN both are enabled customer managed keys of their target account; no key was made where none was named
    assert (by_alias["AWSAccountId"], by_alias["KeyManager"], by_alias["Enabled"]) == (TARGET, "CUSTOMER", True)
    assert by_arn["Arn"] == TARGET_KEY_ARN
    assert len(built.client("kms", OTHER_TARGET).list_keys()["Keys"]) == 1


def test_target_role_trusts_the_pipeline_roles_with_the_external_id(built):
    # WHEN the target role's trust policy is read
    role = built.client("iam", TARGET).get_role(RoleName=built.target_role_name)["Role"]
    statement = role["AssumeRolePolicyDocument"]["Statement"][0]

    # THEN it is the target-account template's: the pipeline account, only its roles under the stack's role
    # path, and the external id
    assert statement["Principal"]["AWS"] == f"arn:aws:iam::{MIGRATION}:root"
    assert statement["Condition"] == {
        "StringEquals": {"sts:ExternalId": built.external_id},
        "ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{MIGRATION}:role/mgn-cutover/mgn-cutover/*"},
    }
    assert DEFAULT_PIPELINE_ROLE_ARNS[0].startswith(f"arn:aws:iam::{MIGRATION}:role/mgn-cutover/mgn-cutover/")


def test_agent_configuration_parameter_is_in_every_target_account(built):
    # WHEN the parameter the request names is read in each target account
    for account in (TARGET, OTHER_TARGET):
        value = pipeline_client("ssm", account).get_parameter(Name="AmazonCloudWatch-wave1")["Parameter"]["Value"]

        # THEN it is a CloudWatch agent configuration
        assert "metrics_collected" in json.loads(value)["metrics"]


def test_defaults_apply_when_the_request_names_no_options(aws):
    request = {"servers": [{"sourceServerId": WEB, "target": {
        "accountId": TARGET, "subnetId": "subnet-0a1b2c3d", "securityGroupIds": ["sg-0a1b2c3d"]}}]}

    # WHEN a world is built with a custom role name and external id for a request without options
    with World.for_request(request, target_role_name="LandingRole", external_id="x-123"):
        # THEN the default agent parameter exists, and the pipeline reaches the account through the custom role
        ssm = pipeline_client("ssm", TARGET, role_name="LandingRole", external_id="x-123")
        assert ssm.get_parameter(Name=DEFAULT_AGENT_CONFIG_PARAMETER)["Parameter"]["Name"] == "AmazonCloudWatch-linux"
        ec2 = pipeline_client("ec2", TARGET, role_name="LandingRole", external_id="x-123")
        assert ipaddress.ip_network(subnet(ec2, "subnet-0a1b2c3d")["CidrBlock"]).prefixlen == 24


def test_a_cutover_requested_event_builds_the_same_world(aws):
    event = {"source": "mgn.cutover", "detail-type": "Cutover Requested", "detail": REQUEST}

    # WHEN the world is built from the EventBridge event
    with World.for_request(event) as world:
        # THEN its servers and accounts are those of the request inside
        assert sorted(world.mgn.servers) == sorted([WEB, DB, BATCH])
        assert world.target_accounts == [TARGET, OTHER_TARGET]


def test_a_server_with_a_launch_job_was_launched_in_the_console_already(aws):
    request = json.loads(json.dumps(REQUEST))
    request["servers"][0]["launchJobId"] = "mgnjob-0123456789abcdefA"

    # WHEN the world is built
    with World.for_request(request):
        # THEN MGN has that job completed, the server cutting over with its cutover instance
        client = boto3.client("mgn")
        job = client.describe_jobs(filters={"jobIDs": ["mgnjob-0123456789abcdefA"]})["items"][0]
        assert job["status"] == "COMPLETED"
        server = client.describe_source_servers(filters={"sourceServerIDs": [WEB]})["items"][0]
        assert server["lifeCycle"]["state"] == "CUTTING_OVER"
        assert server["launchedInstance"]["ec2InstanceID"] == job["participatingServers"][0]["launchedEc2InstanceID"]


def test_spec_shapes_servers_and_speed(aws):
    spec = {"speed": {"mgnLaunchSeconds": 0, "copyMiBps": 50}, "defaultServer": {"diskSizesGiB": [8, 16]},
            "servers": {DB: {"launchFails": True, "replicationKey": "alias/mgn-replication"}}}

    # WHEN a world is built from the spec
    with World.for_request(REQUEST, spec=spec) as world:
        # THEN defaults reach every server, the per-server entry its server, speed the simulator and the rules
        assert world.mgn.servers[WEB].disks_gib == [8, 16]
        assert world.mgn.servers[DB].launch_fails is True and world.mgn.servers[DB].disks_gib == [8, 16]
        key = boto3.client("kms").describe_key(KeyId="alias/mgn-replication")["KeyMetadata"]["Arn"]
        assert world.mgn.servers[DB].replication_key_arn == key
        assert world.mgn.launch_seconds == 0 and world.mgn.conversion_mib_per_second == 500
        assert (aws_rules.pacing.copy_mib_per_second, aws_rules.pacing.snapshot_mib_per_second) == (50, 100)


def test_the_copy_limit_is_a_world_setting(aws):
    # GIVEN a world with no limits given, and one with a small copy limit / WHEN built / THEN EC2's limit follows
    with World():
        assert aws_rules.limits.concurrent_image_copies == 50
    with World({"limits": {"concurrentImageCopies": 2}}):
        assert aws_rules.limits.concurrent_image_copies == 2


# --- what it refuses -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, complaint", [
    ({"poll": {"job": 1}}, "unknown keys ['poll']"),
    ({"polls": {"job": 1}}, "unknown keys ['polls']"),
    ({"speed": {"copyMibps": 1}}, "unknown keys ['copyMibps']"),
    ({"speed": {"copyMiBps": -1}}, "spec.speed.copyMiBps"),
    ({"speed": {"instanceBootSeconds": "40"}}, "spec.speed.instanceBootSeconds"),
    ({"servers": {WEB: {"diskSizesGiB": []}}}, "diskSizesGiB"),
    ({"servers": {WEB: {"diskSizesGiB": [0]}}}, "diskSizesGiB"),
    ({"defaultServer": {"launchFail": True}}, "unknown keys ['launchFail']"),
    ({"limits": {"concurrentCopies": 2}}, "unknown keys ['concurrentCopies']"),
    ({"limits": {"concurrentImageCopies": "2"}}, "spec.limits.concurrentImageCopies"),
])
def test_a_spec_with_a_mistake_is_refused(aws, spec, complaint):
    # WHEN a world is built from a spec with a mistake
    with pytest.raises(WorldSpecError) as raised:
        World(spec)

    # THEN the error names it
    assert complaint in str(raised.value)


@pytest.mark.parametrize("request_, complaint", [
    ({"servers": []}, "names no servers"),
    ({"source": "aws.mgn", "detail-type": "MGN Source Server Launch Result", "detail": {"state": "x"}}, "MGN launch"),
    ({"servers": [
        {"sourceServerId": WEB, "target": {"accountId": TARGET, "subnetId": "subnet-aaaa1111", "privateIpAddress":
                                           "10.9.9.1"}},
        {"sourceServerId": DB, "target": {"accountId": TARGET, "subnetId": "subnet-bbbb2222", "privateIpAddress":
                                          "10.9.9.2"}}]}, "too close"),
])
def test_a_request_the_world_cannot_hold_is_refused(aws, request_, complaint):
    with pytest.raises(WorldSpecError) as raised:
        World.for_request(request_)
    assert complaint in str(raised.value)


def test_a_world_outside_the_mock_is_refused():
    # WHEN a world is built with no moto mock running
    with pytest.raises(NoMockActive):
        World()

    # THEN nothing was installed into moto or botocore
    assert mgn.active() is None and not aws_rules.installed()


def test_closing_the_world_takes_the_sandbox_off_moto(aws):
    # GIVEN a world, which installs the rules and the simulator
    world = World()
    assert aws_rules.installed() and mgn.active() is world.mgn

    # WHEN it is closed
    world.close()

    # THEN neither is left in place
    assert not aws_rules.installed() and mgn.active() is None


# --- network planning ----------------------------------------------------------------------------------------


def test_subnet_plan_widens_to_hold_every_ip_and_keeps_the_free_ones_apart():
    targets = [
        {"subnetId": "subnet-a", "privateIpAddress": "10.1.1.10"},
        {"subnetId": "subnet-a", "privateIpAddress": "10.1.2.10"},
        {"subnetId": "subnet-b"},
        {"subnetId": "subnet-c", "privateIpAddress": "10.0.0.20"},
    ]

    # WHEN subnets are planned for these placements
    plan = plan_subnets(targets)

    # THEN subnet-a widens to the smallest block holding both IPs; subnet-b gets a free /24 clear of the others
    assert plan["subnet-a"] == ipaddress.ip_network("10.1.0.0/22")
    assert plan["subnet-c"] == ipaddress.ip_network("10.0.0.0/24")
    assert plan["subnet-b"].prefixlen == 24 and not plan["subnet-b"].overlaps(plan["subnet-c"])
    assert plan_vpc(list(plan.values())) == [ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("10.0.0.0/16")]


def test_vpc_plan_refuses_what_a_vpc_cannot_hold():
    with pytest.raises(WorldSpecError):
        plan_vpc([ipaddress.ip_network("10.0.0.0/15")])
    with pytest.raises(WorldSpecError):
        plan_vpc([ipaddress.ip_network(f"10.{n}.0.0/24") for n in range(6)])


# --- the inventory -------------------------------------------------------------------------------------------


def rehearse_by_hand(world: World) -> dict:
    """The pipeline's steps for WEB, done with plain boto3 calls; returns the ids a test checks for."""
    mgn_client, ec2, kms = boto3.client("mgn"), boto3.client("ec2"), boto3.client("kms")
    sharing_key = world.ensure_key(MIGRATION, "alias/sharing")
    job_id = mgn_client.start_cutover(sourceServerIDs=[WEB])["job"]["jobID"]
    job, _ = poll(lambda: mgn_client.describe_jobs(filters={"jobIDs": [job_id]})["items"][0],
                  lambda found: found["status"] == "COMPLETED")
    cutover_instance = job["participatingServers"][0]["launchedEc2InstanceID"]

    def available(client, image_id):
        return poll(lambda: client.describe_images(ImageIds=[image_id])["Images"][0],
                    lambda found: found["State"] == "available")[0]

    cutover_image = available(ec2, ec2.create_image(InstanceId=cutover_instance, Name="cutover-web")["ImageId"])
    shareable = available(ec2, ec2.copy_image(SourceImageId=cutover_image["ImageId"], SourceRegion="us-east-1",
                                              Name="shareable-web", Encrypted=True, KmsKeyId=sharing_key)["ImageId"])
    ec2.modify_image_attribute(ImageId=shareable["ImageId"], LaunchPermission={"Add": [{"UserId": TARGET}]})
    for mapping in shareable["BlockDeviceMappings"]:
        ec2.modify_snapshot_attribute(SnapshotId=mapping["Ebs"]["SnapshotId"], Attribute="createVolumePermission",
                                      OperationType="add", UserIds=[TARGET])
    grant_id = kms.create_grant(KeyId=sharing_key, GranteePrincipal=f"arn:aws:iam::{TARGET}:role/MgnCutoverTargetRole",
                                Operations=["Decrypt", "ReEncryptFrom", "CreateGrant", "DescribeKey"])["GrantId"]

    target_ec2, target_ssm = pipeline_client("ec2", TARGET), pipeline_client("ssm", TARGET)
    restored_image = available(target_ec2, target_ec2.copy_image(
        SourceImageId=shareable["ImageId"], SourceRegion="us-east-1", Name="restored-web", Encrypted=True,
        KmsKeyId="alias/target-ebs")["ImageId"])
    restored = target_ec2.run_instances(
        ImageId=restored_image["ImageId"], MinCount=1, MaxCount=1, SubnetId="subnet-0a1b2c3d4e5f60718",
        PrivateIpAddress="10.20.1.15", SecurityGroupIds=["sg-0a1b2c3d4e5f60718"], InstanceType="t3.large",
        IamInstanceProfile={"Name": DEFAULT_INSTANCE_PROFILE})["Instances"][0]["InstanceId"]
    poll(lambda: target_ssm.describe_instance_information()["InstanceInformationList"], bool)
    command_id = target_ssm.send_command(
        InstanceIds=[restored], DocumentName="AWS-ConfigureAWSPackage",
        Parameters={"action": ["Install"], "name": ["AmazonCloudWatchAgent"]})["Command"]["CommandId"]
    mgn_client.finalize_cutover(sourceServerID=WEB)
    return {"cutover_instance": cutover_instance, "cutover_image": cutover_image["ImageId"],
            "shareable": shareable["ImageId"], "sharing_key": sharing_key, "grant": grant_id,
            "restored_image": restored_image["ImageId"], "restored": restored, "command": command_id}


def test_inventory_after_a_rehearsed_cutover_tells_what_every_account_holds(built):
    # GIVEN one server carried through every step of the pipeline by hand
    ids = rehearse_by_hand(built)
    target_key = pipeline_client("kms", TARGET).describe_key(KeyId="alias/target-ebs")["KeyMetadata"]["Arn"]

    # WHEN the inventory is taken
    inventory = built.inventory()

    # THEN it is plain JSON with an entry for every account of the world
    assert json.loads(json.dumps(inventory)) == inventory
    assert list(inventory["accounts"]) == [MIGRATION, TARGET, OTHER_TARGET]
    migration, target = inventory["accounts"][MIGRATION], inventory["accounts"][TARGET]

    # AND the migration account holds the cutover instance under aws/ebs and both images with their keys and sharing
    cutover = next(i for i in migration["instances"] if i["id"] == ids["cutover_instance"])
    assert cutover["state"] == "running" and cutover["volumeKeys"] == ["aws/ebs"]
    assert cutover["tags"][mgn.SOURCE_SERVER_TAG] == WEB
    images = {i["id"]: i for i in migration["images"]}
    assert images[ids["cutover_image"]]["keys"] == ["aws/ebs"]
    assert images[ids["shareable"]] == {"id": ids["shareable"], "name": "shareable-web", "state": "available",
                                        "encrypted": True, "keys": [ids["sharing_key"]], "launchPermissions": [TARGET]}
    shared_snapshots = [s for s in migration["snapshots"] if s.get("image") == ids["shareable"]]
    assert [s["createVolumePermissions"] for s in shared_snapshots] == [[TARGET]]
    assert [(g["grantId"], g["keyId"]) for g in migration["kmsGrants"]] == [(ids["grant"], ids["sharing_key"])]

    # AND the target holds its own copy and the restored instance under its key, the SSM command, and not the
    # migration account's shared image
    assert [(i["id"], i["keys"]) for i in target["images"]] == [(ids["restored_image"], [target_key])]
    restored = next(i for i in target["instances"] if i["id"] == ids["restored"])
    assert (restored["subnet"], restored["privateIp"], restored["type"]) == (
        "subnet-0a1b2c3d4e5f60718", "10.20.1.15", "t3.large")
    assert restored["volumeKeys"] == [target_key] and restored["image"] == ids["restored_image"]
    assert target["ssmCommands"] == [{"commandId": ids["command"], "document": "AWS-ConfigureAWSPackage",
                                      "parameters": {"action": ["Install"], "name": ["AmazonCloudWatchAgent"]},
                                      "instanceIds": [ids["restored"]], "status": "Success"}]

    # AND MGN shows the server cut over with its cutover instance, the others untouched
    servers = {s["id"]: s for s in inventory["mgn"]["sourceServers"]}
    assert servers[WEB] == {"id": WEB, "lifeCycle": "CUTOVER", "replication": "DISCONNECTED",
                            "launchedInstance": ids["cutover_instance"]}
    assert servers[DB]["lifeCycle"] == "READY_FOR_CUTOVER" and "launchedInstance" not in servers[DB]


def test_inventory_of_a_fresh_world_holds_nothing_but_the_network(built):
    # WHEN a freshly built world is inventoried
    inventory = built.inventory()

    # THEN no account holds instances, images, snapshots, grants or commands yet
    for account in inventory["accounts"].values():
        assert account == {"instances": [], "images": [], "snapshots": [], "kmsGrants": [], "ssmCommands": []}
