"""Fixtures of the unit suite: one moto world per test, with the migration stack's resources.

The migration account is moto's default account; target accounts are reached the way the
pipeline reaches them, through STS AssumeRole (moto honours the account id of the role).
"""

from __future__ import annotations

import functools
import json
import sys

import botocore.session
import pytest
from moto import mock_aws

from pipeline import cutover, images, restore
from sandbox import mgn

from tests.unit.support import (
    EXECUTION,
    INSTANT,
    LEDGER_TABLE,
    SECOND_TARGET_ACCOUNT,
    SOURCE_SERVER_ID,
    TARGET_ACCOUNT,
    TARGET_ROLE_NAME,
    WAVE,
    LambdaContext,
    TargetNetwork,
    account_client,
    forget_account_clients,
    migration_client,
    poll,
    server_state,
)


@pytest.fixture(scope="session", autouse=True)
def _service_models_loaded_once():
    """Every assumed-role session the pipeline builds would parse the EC2 model again (a third of a second
    each); one shared loader keeps the suite fast without changing what any client does."""
    shared = functools.cache(botocore.session.create_loader)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.session, "create_loader", shared)
        yield


@pytest.fixture(autouse=True)
def _no_metrics_left_over():
    """Steps called without their handler add metrics that no handler flushes; drop them after each test."""
    yield
    from pipeline.observability import metrics

    metrics.clear_metrics()


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext()


@pytest.fixture
def settings(monkeypatch):
    """The environment the template gives the functions, minus what a resource fixture sets."""
    monkeypatch.setenv("LEDGER_TABLE", LEDGER_TABLE)
    monkeypatch.setenv("TARGET_ROLE_NAME", TARGET_ROLE_NAME)
    monkeypatch.setenv("TARGET_ROLE_EXTERNAL_ID", "external-id-for-unit-tests")
    monkeypatch.setenv("TARGET_ACCOUNT_ALLOWLIST", f"{TARGET_ACCOUNT},{SECOND_TARGET_ACCOUNT}")
    # moto's catalogue of public images is decoded again for every account; no test launches from it.
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    for name in ("SHARING_KEY_ARN", "NOTIFICATION_TOPIC_ARN", "DEFAULT_AGENT_CONFIG_PARAMETER"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def moto_world(settings):
    with mock_aws():
        yield
    forget_account_clients()


@pytest.fixture
def ledger_table(moto_world) -> str:
    """The ledger table as the template declares it: partition key sourceServerId (S)."""
    migration_client("dynamodb").create_table(
        TableName=LEDGER_TABLE,
        AttributeDefinitions=[{"AttributeName": "sourceServerId", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "sourceServerId", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return LEDGER_TABLE


@pytest.fixture
def ledger_item(ledger_table):
    """The raw ledger item of a source server, as DynamoDB holds it."""

    def read(source_server_id: str = SOURCE_SERVER_ID) -> dict | None:
        return (
            migration_client("dynamodb")
            .get_item(TableName=ledger_table, Key={"sourceServerId": {"S": source_server_id}}, ConsistentRead=True)
            .get("Item")
        )

    return read


@pytest.fixture
def claimed_server(ledger_table) -> str:
    """The source server, claimed by this test's execution."""
    from pipeline import ledger

    ledger.claim(SOURCE_SERVER_ID, EXECUTION, WAVE)
    return SOURCE_SERVER_ID


@pytest.fixture
def sharing_key(moto_world, monkeypatch) -> str:
    """The migration account's customer managed key that images are shared under."""
    kms = migration_client("kms")
    arn = kms.create_key(Description="mgn-cutover sharing key")["KeyMetadata"]["Arn"]
    monkeypatch.setenv("SHARING_KEY_ARN", arn)
    return arn


@pytest.fixture
def replication_key(moto_world) -> str:
    """Another customer managed key of the migration account: the one MGN replicated under."""
    return migration_client("kms").create_key(Description="mgn replication key")["KeyMetadata"]["Arn"]


@pytest.fixture
def notification_topic(moto_world, monkeypatch) -> str:
    arn = migration_client("sns").create_topic(Name="mgn-cutover-notifications")["TopicArn"]
    monkeypatch.setenv("NOTIFICATION_TOPIC_ARN", arn)
    return arn


@pytest.fixture
def world(moto_world, monkeypatch):
    """The sandbox's simulated accounts: MGN, and the AWS behaviour moto lacks (sharing, keys, SSM)."""
    from sandbox.world import DEFAULT_EXTERNAL_ID, World

    monkeypatch.setenv("TARGET_ROLE_EXTERNAL_ID", DEFAULT_EXTERNAL_ID)
    # Everything finishes at once; the tests of waiting give operations a duration and move the world's clock
    # (`support.poll` does, between checks, as the state machine's Wait states do).
    with World({"speed": INSTANT}) as built:
        yield built



@pytest.fixture
def target_network(world) -> TargetNetwork:
    """The landing zone the target account's stack and network give: subnet, groups, instance profile, role."""
    network = TargetNetwork(
        account_id=TARGET_ACCOUNT,
        subnet_id="subnet-0a1b2c3d4e5f60001",
        security_group_ids=("sg-0a1b2c3d4e5f60001", "sg-0a1b2c3d4e5f60002"),
        instance_profile="MgnCutoverRestoredInstance",
    )
    world.add_target_account(TARGET_ACCOUNT, [network.placement(privateIpAddress="10.20.1.10")])
    return network


@pytest.fixture
def target_account(target_network) -> str:
    return target_network.account_id


# --- a server's branch, step by step, through the real step functions -----------------------------------------------


@pytest.fixture
def start_branch(world, target_network, claimed_server):
    """Start the server's branch with MGN replicating under `key_arn` (None: the AWS managed EBS key):
    the claim is held, and the pipeline's own steps started the cutover and saw the instance launched."""

    def start(key_arn: str | None) -> dict:
        world.mgn.add_source_server(
            SOURCE_SERVER_ID,
            replication_key_arn=key_arn,
            disks_gib=[8, 20],
            launch=mgn.LaunchSettings(instance_type="m5.xlarge"),
        )
        placement = target_network.placement(
            privateIpAddress="10.20.1.10", instanceProfile=target_network.instance_profile
        )
        current = server_state(placement, options={"maxPollAttempts": 5}, claim={"claimed": True, "artifacts": {}})
        current["cutover"] = cutover.start(current)
        poll(cutover.check_launch, current, "cutover")
        return current

    return start


@pytest.fixture
def cutover_branch(start_branch, replication_key) -> dict:
    """The server's state once MGN launched the cutover instance, its two disks under the replication key."""
    return start_branch(replication_key)


@pytest.fixture
def cutover_instance(cutover_branch) -> dict:
    """The instance MGN launched in the migration account."""
    ec2 = migration_client("ec2")
    instance_id = cutover_branch["cutover"]["cutoverInstanceId"]
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


@pytest.fixture
def created(cutover_branch) -> dict:
    """... and the cutover image is available."""
    cutover_branch["image"] = images.create(cutover_branch)
    poll(images.check, cutover_branch, "image", "image")
    return cutover_branch


@pytest.fixture
def under_sharing_key(created, sharing_key) -> dict:
    """... and its copy under the sharing key is available."""
    created["sharedImage"] = images.copy_for_sharing(created)
    poll(images.check, created, "sharedImage", "sharedImage")
    return created


@pytest.fixture
def shared(under_sharing_key) -> dict:
    """... and the copy, its snapshots and the key are shared with the target account."""
    under_sharing_key["share"] = images.share(under_sharing_key)
    return under_sharing_key


@pytest.fixture
def in_target(shared) -> dict:
    """... and the target account's own copy is available."""
    shared["targetImage"] = images.copy_to_target(shared)
    poll(images.check, shared, "targetImage", "targetImage")
    return shared


@pytest.fixture
def restored(shared) -> dict:
    """... and, in the default order: the target's own copy started, the restored instance launched from the
    shared image and passing its status checks, then the target's copy available (its check revokes the grant
    the launch needed)."""
    shared["targetImage"] = images.copy_to_target(shared)
    shared["restored"] = restore.launch(shared)
    poll(lambda current: restore.check(current), shared, "restored")
    poll(images.check, shared, "targetImage", "targetImage")
    return shared


@pytest.fixture
def finalized(restored) -> dict:
    """... and MGN finalized the cutover: the point of no return."""
    restored["finalize"] = cutover.finalize(restored)
    return restored


class _CurrentStdout:
    """Writes to whatever sys.stdout is at the time of the write (capsys swaps it between phases)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def log_lines(capsys, monkeypatch):
    """The JSON lines the functions write to stdout, read the way CloudWatch Logs receives them: Powertools'
    log records, and its metrics in the embedded metric format (EMF).

    The logger's handler keeps the stdout it found at import time; it is pointed at the stdout
    of the moment, which capsys captures.
    """
    from pipeline.observability import logger

    monkeypatch.setattr(logger.registered_handler, "stream", _CurrentStdout())

    def read() -> list[dict]:
        return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]

    return read


@pytest.fixture
def ec2():
    """EC2 in the migration account."""
    return migration_client("ec2")


@pytest.fixture
def target_ec2(target_account):
    """EC2 in the target account, through the pipeline's role there."""
    return account_client("ec2", target_account)
