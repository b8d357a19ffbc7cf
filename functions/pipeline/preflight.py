"""Preflight: read-only checks, per server, of everything a cutover needs, run before the change window.

Each check returns `{"check", "passed", "result", "detail", "fix"}`: `result` is "pass", "warn" (passed, with a
fix worth making), "fail", or "skip" (not checked because a check it depends on failed; it does not pass). Nothing
here changes anything: only Describe, List and Get calls, and STS AssumeRole into the target role (the same
assumed-role path the pipeline uses). `run_server` is usable outside Lambda, with the default boto3 session and
the environment `pipeline.config` reads (SHARING_KEY_ARN, TARGET_ROLE_NAME, TARGET_ROLE_EXTERNAL_ID).
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

from botocore.exceptions import ClientError

from pipeline import aws, config, notify
from pipeline.observability import is_transient, logger

# Stable check ids: the report, the wave summary and the operator CLI name checks by these.
SOURCE_SERVER_READY = "source-server-ready"
REPLICATION_HEALTHY = "replication-healthy"
TARGET_ROLE_ASSUMABLE = "target-role-assumable"
SHARING_KEY_USABLE = "sharing-key-usable"
SUBNET_EXISTS = "subnet-exists"
SECURITY_GROUPS_IN_SUBNET_VPC = "security-groups-in-subnet-vpc"
INSTANCE_PROFILE_EXISTS = "instance-profile-exists"
PRIVATE_IP_FREE = "private-ip-free"
INSTANCE_TYPE_OFFERED = "instance-type-offered"
VCPU_QUOTA_HEADROOM = "vcpu-quota-headroom"
AGENT_CONFIG_PARAMETER = "agent-config-parameter"
LAUNCH_DISPOSITION = "launch-disposition"
REPLICATION_KEY = "replication-key"

CHECKS = (SOURCE_SERVER_READY, REPLICATION_HEALTHY, TARGET_ROLE_ASSUMABLE, SHARING_KEY_USABLE, SUBNET_EXISTS,
          SECURITY_GROUPS_IN_SUBNET_VPC, INSTANCE_PROFILE_EXISTS, PRIVATE_IP_FREE, INSTANCE_TYPE_OFFERED,
          VCPU_QUOTA_HEADROOM, AGENT_CONFIG_PARAMETER, LAUNCH_DISPOSITION, REPLICATION_KEY)

# The checks made through the target role: skipped when it cannot be assumed.
TARGET_ACCOUNT_CHECKS = (SUBNET_EXISTS, SECURITY_GROUPS_IN_SUBNET_VPC, INSTANCE_PROFILE_EXISTS, PRIVATE_IP_FREE,
                         INSTANCE_TYPE_OFFERED, VCPU_QUOTA_HEADROOM, AGENT_CONFIG_PARAMETER)

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
DEFAULT_MAX_REPLICATION_LAG_SECONDS = 900
# Step Functions keeps at most 32,768 characters of a Fail state's cause.
MAX_CAUSE_CHARACTERS = 32000
READY_FOR_CUTOVER = "READY_FOR_CUTOVER"

# Service Quotas' "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances", counted in vCPUs.
VCPU_QUOTA_CODE = "L-1216C47A"
_STANDARD_FAMILIES = frozenset("acdhimrtz")
# Families whose first letter is a standard one but that have quotas of their own.
_OTHER_QUOTA_FAMILIES = ("dl", "hpc", "inf", "mac", "trn")
_ACTIVE_STATES = ["pending", "running"]

# What the target account's principals need on the sharing key for EBS to copy an image under it.
_KEY_USE = (("kms:DescribeKey",), ("kms:Decrypt", "kms:ReEncryptFrom"), ("kms:CreateGrant",))
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")

Result = dict[str, Any]


def result(check: str, outcome: str, detail: str, fix: str | None = None) -> Result:
    return {"check": check, "passed": outcome in (PASS, WARN), "result": outcome, "detail": detail,
            "fix": fix if outcome != PASS else None}


def skipped(check: str, because: str) -> Result:
    return result(check, SKIP, f"not checked: {because} failed", f"fix {because} first, then run the preflight again")


# --- the server as a whole --------------------------------------------------------------------------------------


def run_server(state_or_server: dict, options: dict | None = None) -> dict:
    """Every check for one server; `state_or_server` is the per-server state of the state machine
    (`server`, `options`, optionally `waveServers`) or a request's server entry, with `options` beside it."""
    if "server" in state_or_server:
        server, options = state_or_server["server"], {**state_or_server.get("options", {}), **(options or {})}
        wave_servers = state_or_server.get("waveServers") or [server]
    else:
        server, options, wave_servers = state_or_server, options or {}, [state_or_server]
    logger.append_keys(source_server_id=server["sourceServerId"])

    source = _source_server(server["sourceServerId"])
    launch = _launch_configuration(server["sourceServerId"]) if source else None
    results = _migration_account_checks(server, source, launch, options)

    account = server["target"]["accountId"]
    role = check_target_role_assumable(account)
    results += [role, check_sharing_key_usable(account)]
    if role["passed"]:
        results += _target_account_checks(server, launch, options, wave_servers)
    else:
        results += [skipped(check, TARGET_ROLE_ASSUMABLE) for check in TARGET_ACCOUNT_CHECKS]
    return summary(server, results)


def _migration_account_checks(server: dict, source: dict | None, launch: dict | None, options: dict) -> list[Result]:
    max_lag = options.get("maxReplicationLagSeconds")
    return [check_source_server_ready(server, source),
            check_replication_healthy(source, DEFAULT_MAX_REPLICATION_LAG_SECONDS if max_lag is None else int(max_lag)),
            check_launch_disposition(launch),
            check_replication_key(server["sourceServerId"] if source else None)]


def _target_account_checks(server: dict, launch: dict | None, options: dict, wave_servers: list[dict]) -> list[Result]:
    target = server["target"]
    subnet_result, subnet = check_subnet_exists(target)
    instance_type = target.get("instanceType") or _launch_template_instance_type(launch)
    account = target["accountId"]
    return [subnet_result, check_security_groups(target, subnet), check_instance_profile(target, options),
            check_private_ip_free(target, subnet), check_instance_type_offered(instance_type, subnet, account),
            check_vcpu_quota(account, _wave_instance_types(server, instance_type, wave_servers)),
            check_agent_config_parameter(account, options)]


def summary(server: dict, results: list[Result]) -> dict:
    """The server's line of the preflight report."""
    results = sorted(results, key=lambda entry: CHECKS.index(entry["check"]))
    failed = [entry["check"] for entry in results if not entry["passed"]]
    report = {
        "sourceServerId": server["sourceServerId"],
        "targetAccountId": server["target"]["accountId"],
        "passed": not failed,
        "failedChecks": failed,
        "warnings": [entry["check"] for entry in results if entry["result"] == WARN],
        "checks": results,
    }
    logger.info("Server preflight done", passed=report["passed"], failed_checks=failed)
    return report


def _source_server(source_server_id: str) -> dict | None:
    items = aws.client("mgn").describe_source_servers(filters={"sourceServerIDs": [source_server_id]})["items"]
    return items[0] if items else None


def _launch_configuration(source_server_id: str) -> dict | None:
    try:
        return aws.client("mgn").get_launch_configuration(sourceServerID=source_server_id)
    except ClientError as err:
        _reraise_transient(err)
        return None


def _reraise_transient(err: ClientError) -> None:
    # A throttled or failed call says nothing about the server: it is retried, never reported as a finding.
    if is_transient(err):
        raise err


def _code(err: ClientError) -> str:
    return err.response.get("Error", {}).get("Code", "")


# --- MGN in the migration account ---------------------------------------------------------------------------------


def check_source_server_ready(server: dict, source: dict | None) -> Result:
    server_id = server["sourceServerId"]
    if source is None:
        return result(SOURCE_SERVER_READY, FAIL, f"MGN has no source server {server_id} in this account and region",
                      "check sourceServerId: it must be a server replicating in the migration account's MGN")
    if source.get("isArchived"):
        return result(SOURCE_SERVER_READY, FAIL, f"source server {server_id} is archived",
                      "unarchive the server in MGN and let it replicate, or remove it from the wave")
    life_cycle = source.get("lifeCycle", {}).get("state", "")
    if life_cycle == READY_FOR_CUTOVER:
        return result(SOURCE_SERVER_READY, PASS, f"lifecycle state {life_cycle}")
    if life_cycle == "CUTTING_OVER" and server.get("launchJobId"):
        return result(SOURCE_SERVER_READY, PASS, f"lifecycle state {life_cycle}: the pipeline picks up launch job "
                                                 f"{server['launchJobId']}")
    return result(SOURCE_SERVER_READY, FAIL, f"lifecycle state is {life_cycle or 'unknown'}, not {READY_FOR_CUTOVER}",
                  _lifecycle_fix(life_cycle))


def _lifecycle_fix(life_cycle: str) -> str:
    if life_cycle in ("READY_FOR_TEST", "TESTING"):
        return "test-launch the server in MGN, check it, then mark it ready for cutover"
    if life_cycle == "CUTTING_OVER":
        return ("a cutover is already running for it: finish it, or revert it to ready for cutover in MGN, "
                "or give its launchJobId in the request")
    if life_cycle in ("CUTOVER", "DISCONNECTED"):
        return "the server is already cut over or disconnected: remove it from the wave"
    return "wait for the initial sync to finish and test the server in MGN, then mark it ready for cutover"


def check_replication_healthy(source: dict | None, max_lag_seconds: int) -> Result:
    if source is None:
        return skipped(REPLICATION_HEALTHY, SOURCE_SERVER_READY)
    info = source.get("dataReplicationInfo") or {}
    replication = info.get("dataReplicationState", "unknown")
    if replication != "CONTINUOUS":
        error = (info.get("dataReplicationError") or {}).get("error")
        detail = f"data replication is {replication}" + (f" ({error})" if error else "")
        fix = ("replication stalled: see the server's replication error in MGN, fix the agent's path to the "
               "replication server (TCP 1500) and wait for CONTINUOUS") if replication == "STALLED" else (
            "wait until MGN shows data replication CONTINUOUS (resume it if it is paused or stopped)")
        return result(REPLICATION_HEALTHY, FAIL, detail, fix)
    lag = info.get("lagDuration")
    lag_seconds = duration_seconds(lag) if lag else 0.0
    if lag_seconds is None:
        return result(REPLICATION_HEALTHY, FAIL, f"MGN reports a lag of {lag!r}, which is not an ISO 8601 duration",
                      "check the server's replication in MGN")
    if lag_seconds > max_lag_seconds:
        return result(REPLICATION_HEALTHY, FAIL,
                      f"replication lags {lag} ({lag_seconds:.0f} s), above the {max_lag_seconds} s allowed",
                      f"wait until the lag is below {max_lag_seconds} s (the backlog drains), or raise "
                      "options.maxReplicationLagSeconds")
    return result(REPLICATION_HEALTHY, PASS, f"CONTINUOUS, lag {lag or 'none'}")


def duration_seconds(duration: str) -> float | None:
    """Seconds of an ISO 8601 duration such as PT1H30M or P1DT2S; None if it is not one."""
    match = _DURATION.match(duration or "")
    if not match or duration in ("P", "PT"):
        return None
    days, hours, minutes, seconds = (float(part) if part else 0.0 for part in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def check_launch_disposition(launch: dict | None) -> Result:
    """STARTED is required: the pipeline images the cutover instance, and launched STOPPED it never boots in the
    migration account, so MGN's first boot and post-launch actions never run and a server that does not come up
    after conversion would be found only in the target account, after every copy of the window."""
    if launch is None:
        return skipped(LAUNCH_DISPOSITION, SOURCE_SERVER_READY)
    disposition = launch.get("launchDisposition", "unknown")
    if disposition == "STARTED":
        return result(LAUNCH_DISPOSITION, PASS, "the cutover instance is launched STARTED")
    return result(LAUNCH_DISPOSITION, FAIL,
                  f"the launch settings launch the cutover instance {disposition}: it would never boot before "
                  "the pipeline images it, so nothing shows the converted server starts",
                  "set the server's instance launch disposition to STARTED in MGN's launch settings "
                  "(UpdateLaunchConfiguration launchDisposition=STARTED)")


def check_replication_key(source_server_id: str | None) -> Result:
    if source_server_id is None:
        return skipped(REPLICATION_KEY, SOURCE_SERVER_READY)
    replication = aws.client("mgn").get_replication_configuration(sourceServerID=source_server_id)
    key = replication.get("ebsEncryptionKeyArn") if replication.get("ebsEncryption") == "CUSTOM" else None
    if key and key == config.sharing_key_arn():
        return result(REPLICATION_KEY, PASS, "replicated under the sharing key: no re-encrypting copy is needed")
    under = f"key {key}" if key else "the default EBS key (aws/ebs)"
    return result(REPLICATION_KEY, WARN,
                  f"replicated under {under}: the pipeline makes an extra re-encrypting copy under the sharing key "
                  "in the window",
                  "set the replication settings' EBS encryption to the sharing key before replication starts")


def _launch_template_instance_type(launch: dict | None) -> str | None:
    """The instance type MGN's EC2 launch template gives the cutover instance (its default version)."""
    template_id = (launch or {}).get("ec2LaunchTemplateID")
    if not template_id:
        return None
    try:
        versions = aws.client("ec2").describe_launch_template_versions(
            LaunchTemplateId=template_id, Versions=["$Default"])["LaunchTemplateVersions"]
    except ClientError as err:
        _reraise_transient(err)
        return None
    return versions[0].get("LaunchTemplateData", {}).get("InstanceType") if versions else None


# --- the target account ---------------------------------------------------------------------------------------------


def _target(service: str, account: str):
    return aws.target_client(service, account, "mgn-cutover-preflight")


def check_target_role_assumable(account: str) -> Result:
    role = aws.target_role_arn(account)
    try:
        _target("ec2", account)
    except ClientError as err:
        _reraise_transient(err)
        return result(TARGET_ROLE_ASSUMABLE, FAIL, f"cannot assume {role}: {_code(err)}",
                      f"deploy templates/target-account.yaml in account {account} with this pipeline's account, "
                      "stack name and external id (PipelineAccountId, PipelineStackName, ExternalId)")
    return result(TARGET_ROLE_ASSUMABLE, PASS, f"assumed {role}")


def check_sharing_key_usable(account: str) -> Result:
    """The sharing key is an enabled customer managed key, and its policy lets the target account use it."""
    key_arn = config.sharing_key_arn()
    kms = aws.client("kms")
    metadata = kms.describe_key(KeyId=key_arn)["KeyMetadata"]
    if metadata.get("KeyState") != "Enabled" or metadata.get("KeyManager") != "CUSTOMER":
        return result(SHARING_KEY_USABLE, FAIL,
                      f"the sharing key is {metadata.get('KeyState')} ({metadata.get('KeyManager')} managed)",
                      "enable the pipeline stack's sharing key (or cancel its deletion)")
    policy = json.loads(kms.get_key_policy(KeyId=key_arn, PolicyName="default")["Policy"])
    if _statements_for(policy, account, "Deny"):
        return result(SHARING_KEY_USABLE, FAIL, f"the sharing key's policy denies account {account}",
                      "remove the Deny for the target account from the sharing key's policy")
    allowed = {action for statement in _statements_for(policy, account, "Allow") for action in _actions(statement)}
    if all(any(_action_allowed(action, allowed) for action in choice) for choice in _KEY_USE):
        return result(SHARING_KEY_USABLE, PASS, f"the sharing key's policy lets account {account} use it through EC2")
    return result(SHARING_KEY_USABLE, WARN,
                  f"the sharing key's policy does not name account {account}: only the grant the pipeline gives "
                  "the target role lets it copy the image",
                  f"give account {account} the sharing key's target statements again: updating the pipeline stack "
                  "with the account in TargetAccountIds writes them")


def _statements_for(policy: dict, account: str, effect: str) -> list[dict]:
    statements = policy.get("Statement", [])
    statements = statements if isinstance(statements, list) else [statements]
    return [s for s in statements if s.get("Effect") == effect and any(
        _names_account(principal, account) for principal in _principals(s.get("Principal")))]


def _principals(principal: Any) -> list[str]:
    if principal == "*":
        return ["*"]
    value = principal.get("AWS", []) if isinstance(principal, dict) else []
    return value if isinstance(value, list) else [value]


def _names_account(principal: str, account: str) -> bool:
    return principal in ("*", account) or f":{account}:" in principal


def _actions(statement: dict) -> list[str]:
    actions = statement.get("Action", [])
    return [a.lower() for a in (actions if isinstance(actions, list) else [actions])]


def _action_allowed(action: str, allowed: set[str]) -> bool:
    # NOTE: conditions of the statements are not evaluated; the template's (kms:ViaService EC2, grants for AWS
    # resources) are ones EBS's own calls meet.
    return any(pattern in ("*", "kms:*") or re.fullmatch(pattern.replace("*", ".*"), action.lower())
               for pattern in allowed)


def check_subnet_exists(target: dict) -> tuple[Result, dict | None]:
    subnet_id, account = target["subnetId"], target["accountId"]
    try:
        subnets = _target("ec2", account).describe_subnets(SubnetIds=[subnet_id])["Subnets"]
    except ClientError as err:
        _reraise_transient(err)
        subnets = []
    if not subnets:
        return result(SUBNET_EXISTS, FAIL, f"account {account} has no subnet {subnet_id}",
                      f"create the subnet in account {account}, or correct target.subnetId"), None
    subnet = subnets[0]
    return result(SUBNET_EXISTS, PASS, f"{subnet_id} in {subnet['VpcId']}, {subnet['AvailabilityZone']}, "
                                       f"{subnet['CidrBlock']}"), subnet


def check_security_groups(target: dict, subnet: dict | None) -> Result:
    wanted, account = target["securityGroupIds"], target["accountId"]
    groups = _target("ec2", account).describe_security_groups(
        Filters=[{"Name": "group-id", "Values": wanted}])["SecurityGroups"]
    found = {group["GroupId"]: group.get("VpcId") for group in groups}
    missing = [group for group in wanted if group not in found]
    if missing:
        return result(SECURITY_GROUPS_IN_SUBNET_VPC, FAIL,
                      f"account {account} has no security group {' '.join(missing)}",
                      "create the security groups in the subnet's VPC, or correct target.securityGroupIds")
    if subnet is None:
        return skipped(SECURITY_GROUPS_IN_SUBNET_VPC, SUBNET_EXISTS)
    elsewhere = [group for group in wanted if found[group] != subnet["VpcId"]]
    if elsewhere:
        return result(SECURITY_GROUPS_IN_SUBNET_VPC, FAIL,
                      f"{' '.join(f'{g} is in {found[g]}' for g in elsewhere)}, not the subnet's {subnet['VpcId']}",
                      f"use security groups of {subnet['VpcId']} in target.securityGroupIds")
    return result(SECURITY_GROUPS_IN_SUBNET_VPC, PASS, f"{' '.join(wanted)} in {subnet['VpcId']}")


def check_instance_profile(target: dict, options: dict) -> Result:
    account = target["accountId"]
    profile = target.get("instanceProfile") or config.default_instance_profile()
    if not profile:
        if options.get("installAgent", True):
            return result(INSTANCE_PROFILE_EXISTS, FAIL, "no instance profile: the restored instance would never "
                                                         "register with SSM, so the agent steps could only time out",
                          "name target.instanceProfile (the target stack's profile has SSM and the agent's policies)")
        return result(INSTANCE_PROFILE_EXISTS, PASS, "no instance profile requested, and no agent to install")
    try:
        found = _target("iam", account).get_instance_profile(InstanceProfileName=profile)["InstanceProfile"]
    except ClientError as err:
        _reraise_transient(err)
        if _code(err) != "NoSuchEntity":
            raise
        return result(INSTANCE_PROFILE_EXISTS, FAIL, f"account {account} has no instance profile {profile}",
                      f"deploy templates/target-account.yaml in account {account} (it creates the profile), or "
                      "correct target.instanceProfile")
    if not found.get("Roles"):
        return result(INSTANCE_PROFILE_EXISTS, FAIL, f"instance profile {profile} has no role",
                      f"add a role with AmazonSSMManagedInstanceCore to instance profile {profile}")
    # NOTE: whether the target role may pass this profile's role (its PassRole names the target stack's own
    # role only) is not checked: the target role cannot read its own policy.
    return result(INSTANCE_PROFILE_EXISTS, PASS, f"{profile} with role {found['Roles'][0]['RoleName']}")


def check_private_ip_free(target: dict, subnet: dict | None) -> Result:
    address = target.get("privateIpAddress")
    if not address:
        return result(PRIVATE_IP_FREE, PASS, "no private IP requested: EC2 picks one")
    if subnet is None:
        return skipped(PRIVATE_IP_FREE, SUBNET_EXISTS)
    network = ipaddress.ip_network(subnet["CidrBlock"])
    ip = ipaddress.ip_address(address)
    hosts = list(network)
    # AWS keeps the first four addresses and the last one of every subnet.
    if ip not in network or ip in hosts[:4] or ip == hosts[-1]:
        return result(PRIVATE_IP_FREE, FAIL, f"{address} is not an address an instance can hold in "
                                             f"{subnet['SubnetId']} ({network})",
                      f"choose an address inside {network}, not its first four nor its last")
    interfaces = _target("ec2", target["accountId"]).describe_network_interfaces(Filters=[
        {"Name": "subnet-id", "Values": [subnet["SubnetId"]]},
        {"Name": "addresses.private-ip-address", "Values": [address]}])["NetworkInterfaces"]
    if interfaces:
        holder = interfaces[0]
        user = (holder.get("Attachment") or {}).get("InstanceId") or holder.get("Description") or "nothing attached"
        return result(PRIVATE_IP_FREE, FAIL, f"{address} is taken by {holder['NetworkInterfaceId']} ({user})",
                      "free the address (release the interface that holds it), or choose another "
                      "target.privateIpAddress")
    return result(PRIVATE_IP_FREE, PASS, f"{address} is free in {subnet['SubnetId']}")


def check_instance_type_offered(instance_type: str | None, subnet: dict | None, account: str) -> Result:
    if not instance_type:
        return result(INSTANCE_TYPE_OFFERED, FAIL, "no instance type: the request names none and MGN's launch "
                                                   "template could not be read",
                      "set target.instanceType, or check the server's EC2 launch template in MGN")
    if subnet is None:
        return skipped(INSTANCE_TYPE_OFFERED, SUBNET_EXISTS)
    zone = subnet["AvailabilityZone"]
    offerings = _target("ec2", account).describe_instance_type_offerings(
        LocationType="availability-zone",
        Filters=[{"Name": "location", "Values": [zone]}, {"Name": "instance-type", "Values": [instance_type]}],
    )["InstanceTypeOfferings"]
    if not offerings:
        return result(INSTANCE_TYPE_OFFERED, FAIL, f"{instance_type} is not offered in {zone}",
                      f"choose a type offered in {zone} (describe-instance-type-offerings) for target.instanceType, "
                      "or a subnet in another zone")
    return result(INSTANCE_TYPE_OFFERED, PASS, f"{instance_type} is offered in {zone}")


def is_standard(instance_type: str) -> bool:
    """Whether the type counts against the Running On-Demand Standard instances quota."""
    family = instance_type.split(".")[0]
    return family[:1] in _STANDARD_FAMILIES and not family.startswith(_OTHER_QUOTA_FAMILIES) and "-" not in family


def _wave_instance_types(server: dict, instance_type: str | None, wave_servers: list[dict]) -> list[str]:
    """The instance types the wave launches in this server's target account, this server's resolved one included.

    NOTE: another server of the wave without a requested type is counted at the type MGN recommends for it
    (one DescribeSourceServers call for all of them), not at its launch template's type."""
    account = server["target"]["accountId"]
    others = [s for s in wave_servers if s["target"]["accountId"] == account and
              s["sourceServerId"] != server["sourceServerId"]]
    types = [instance_type] if instance_type else []
    types += [s["target"]["instanceType"] for s in others if s["target"].get("instanceType")]
    unnamed = [s["sourceServerId"] for s in others if not s["target"].get("instanceType")]
    if unnamed:
        pages = aws.client("mgn").get_paginator("describe_source_servers").paginate(
            filters={"sourceServerIDs": unnamed})
        types += [item.get("sourceProperties", {}).get("recommendedInstanceType") for page in pages
                  for item in page["items"]]
    return [t for t in types if t]


def check_vcpu_quota(account: str, wave_types: list[str]) -> Result:
    quotas = _target("service-quotas", account)
    try:
        quota = quotas.get_service_quota(ServiceCode="ec2", QuotaCode=VCPU_QUOTA_CODE)["Quota"]["Value"]
    except ClientError as err:
        _reraise_transient(err)
        return result(VCPU_QUOTA_HEADROOM, WARN, f"Service Quotas gave no value for {VCPU_QUOTA_CODE}: {_code(err)}",
                      f"check the Running On-Demand Standard instances quota of account {account} by hand")
    ec2 = _target("ec2", account)
    running = [instance["InstanceType"]
               for page in ec2.get_paginator("describe_instances").paginate(
                   Filters=[{"Name": "instance-state-name", "Values": _ACTIVE_STATES}])
               for reservation in page["Reservations"] for instance in reservation["Instances"]]
    vcpus = _vcpus(ec2, {t for t in running + wave_types if is_standard(t)})
    # NOTE: what other waves or teams will launch in the account by the window is not known here; the headroom
    # is for this wave over what runs now.
    in_use = sum(vcpus.get(t, 0) for t in running if is_standard(t))
    adds = sum(vcpus.get(t, 0) for t in wave_types if is_standard(t))
    detail = f"{in_use:.0f} vCPUs running + {adds:.0f} for the wave, quota {quota:.0f}"
    if in_use + adds > quota:
        return result(VCPU_QUOTA_HEADROOM, FAIL, detail,
                      f"request an increase of {VCPU_QUOTA_CODE} (Running On-Demand Standard instances) in account "
                      f"{account} to at least {in_use + adds:.0f} vCPUs, or move servers to a later wave")
    return result(VCPU_QUOTA_HEADROOM, PASS, detail)


def _vcpus(ec2, instance_types: set[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    names = sorted(instance_types)
    for start in range(0, len(names), 100):
        described = ec2.describe_instance_types(InstanceTypes=names[start:start + 100])["InstanceTypes"]
        found.update({item["InstanceType"]: item["VCpuInfo"]["DefaultVCpus"] for item in described})
    return found


def check_agent_config_parameter(account: str, options: dict) -> Result:
    if not options.get("installAgent", True):
        return result(AGENT_CONFIG_PARAMETER, PASS, "the agent is not installed (options.installAgent false)")
    name = options.get("agentConfigParameter") or config.default_agent_config_parameter()
    if not name:
        return result(AGENT_CONFIG_PARAMETER, FAIL, "no agent configuration parameter is named",
                      "set options.agentConfigParameter, or the stack's DefaultAgentConfigParameter")
    found = _target("ssm", account).describe_parameters(
        ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [name]}])["Parameters"]
    if not found:
        return result(AGENT_CONFIG_PARAMETER, FAIL, f"account {account} has no SSM parameter {name}",
                      f"put the CloudWatch agent configuration in SSM parameter {name} in account {account} (a name "
                      "starting AmazonCloudWatch- is readable under CloudWatchAgentServerPolicy)")
    return result(AGENT_CONFIG_PARAMETER, PASS, f"{name} exists")


# --- the wave ---------------------------------------------------------------------------------------------------------


def summarize(wave: str, execution: str, results: list[dict]) -> dict:
    """The wave's preflight summary, published to the notification topic as a preflight."""
    failed = [entry for entry in results if not entry.get("passed")]
    summary_ = {
        "mode": "preflight",
        "wave": wave,
        "execution": execution,
        "total": len(results),
        "passed": len(results) - len(failed),
        "failed": len(failed),
        "failures": [{"sourceServerId": entry["sourceServerId"], "checks": _failures(entry)} for entry in failed],
        "servers": results,
    }
    summary_["subject"] = f"Preflight of wave {wave}: {summary_['passed']} of {summary_['total']} servers ready"[:100]
    notify.publish(summary_["subject"], render(summary_), {
        "wave": wave, "mode": "preflight", "outcome": "FAILED" if failed else "SUCCEEDED", "failed": len(failed)})
    logger.info("Preflight summarized", total=summary_["total"], failed=summary_["failed"])
    # The PreflightFailed state's cause: every failing check with its fix, nothing else.
    summary_["cause"] = _cause(summary_)
    return summary_


def _cause(summary_: dict) -> str:
    """The summary's failures as the Fail state's cause, within what Step Functions keeps of a cause."""
    fields = {key: summary_[key] for key in ("mode", "wave", "execution", "total", "passed", "failed")}
    failures = list(summary_["failures"])
    cause = json.dumps({**fields, "failures": failures})
    while len(cause) > MAX_CAUSE_CHARACTERS and failures:
        # NOTE: a very large failing wave names its first failures only; the notification lists them all.
        failures.pop()
        left_out = len(summary_["failures"]) - len(failures)
        cause = json.dumps({**fields, "failures": failures, "failuresLeftOut": left_out})
    return cause


def _failures(entry: dict) -> list[dict]:
    if entry.get("error"):
        return [{"check": "preflight", "detail": str(entry["error"])[:500], "fix": "see the execution history"}]
    return [{"check": c["check"], "result": c["result"], "detail": c["detail"], "fix": c["fix"]}
            for c in entry.get("checks", []) if not c["passed"]]


def render(summary_: dict) -> str:
    """The preflight notification as a person reads it: one line per failing check."""
    lines = [summary_["subject"], "This was a preflight: nothing was changed.", f"Execution: {summary_['execution']}",
             ""]
    for entry in summary_["servers"]:
        lines.append(f"{entry['sourceServerId']}  {'READY' if entry.get('passed') else 'NOT READY'}")
        for failure in _failures(entry) if not entry.get("passed") else []:
            lines.append(f"    {failure['check']}: {failure['detail']} -> {failure['fix']}")
    return "\n".join(lines)
