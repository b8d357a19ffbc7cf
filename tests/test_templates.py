"""The two templates: cfn-lint, then what a reviewer checks by eye and cfn-lint does not.

template.yaml is the pipeline in the migration account; templates/target-account.yaml is
deployed in every target account. Policies are read from the YAML as written (before the SAM
transform), with short-form tags turned into their JSON form by tests/cfn_yaml.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from cfnlint.api import lint_file
from cfnlint.config import ManualArgs

from tests.cfn_yaml import load

ROOT = Path(__file__).resolve().parent.parent
PIPELINE_TEMPLATE = ROOT / "template.yaml"
TARGET_TEMPLATE = ROOT / "templates" / "target-account.yaml"

# An Allow statement may name Resource "*" only when its Sid ends like this: the convention
# for actions that support no resource-level permission.
REQUIRES_STAR = "RequiresStar"

LEDGER = {"Ref": "LedgerTable"}
SHARING_KEY = {"Fn::GetAtt": ["SharingKey", "Arn"]}
ALLOWLIST = {"Fn::Join": [",", {"Ref": "TargetAccountIds"}]}
ROLE_NAME = {"Ref": "TargetRoleName"}
EXTERNAL_ID = {"Ref": "TargetRoleExternalId"}

# Each function's handler and its environment, exactly: a variable a function does not read is
# a setting nobody maintains, and a missing one fails the function at its first use.
FUNCTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "NormalizeRequestFunction": (
        "handlers.normalize_request.handler",
        {
            "TARGET_ACCOUNT_ALLOWLIST": ALLOWLIST,
            "DEFAULT_AGENT_CONFIG_PARAMETER": {"Ref": "DefaultAgentConfigParameter"},
        },
    ),
    "ClaimServerFunction": ("handlers.claim_server.handler", {"LEDGER_TABLE": LEDGER}),
    "StartCutoverFunction": ("handlers.start_cutover.handler", {"LEDGER_TABLE": LEDGER}),
    "CheckCutoverLaunchFunction": ("handlers.check_cutover_launch.handler", {"LEDGER_TABLE": LEDGER}),
    "CreateImageFunction": ("handlers.create_image.handler", {"LEDGER_TABLE": LEDGER}),
    "CheckImageFunction": (
        "handlers.check_image.handler",
        {"TARGET_ROLE_NAME": ROLE_NAME, "TARGET_ROLE_EXTERNAL_ID": EXTERNAL_ID, "SHARING_KEY_ARN": SHARING_KEY},
    ),
    "CopyImageForSharingFunction": (
        "handlers.copy_image_for_sharing.handler",
        {"LEDGER_TABLE": LEDGER, "SHARING_KEY_ARN": SHARING_KEY},
    ),
    "ShareImageFunction": (
        "handlers.share_image.handler",
        {
            "LEDGER_TABLE": LEDGER,
            "SHARING_KEY_ARN": SHARING_KEY,
            "TARGET_ACCOUNT_ALLOWLIST": ALLOWLIST,
            "TARGET_ROLE_NAME": ROLE_NAME,
        },
    ),
    "CopyImageToTargetFunction": (
        "handlers.copy_image_to_target.handler",
        {
            "LEDGER_TABLE": LEDGER,
            "TARGET_ROLE_NAME": ROLE_NAME,
            "TARGET_ROLE_EXTERNAL_ID": EXTERNAL_ID,
            "TARGET_ACCOUNT_ALLOWLIST": ALLOWLIST,
        },
    ),
    "LaunchRestoredInstanceFunction": (
        "handlers.launch_restored_instance.handler",
        {
            "LEDGER_TABLE": LEDGER,
            "TARGET_ROLE_NAME": ROLE_NAME,
            "TARGET_ROLE_EXTERNAL_ID": EXTERNAL_ID,
            "TARGET_ACCOUNT_ALLOWLIST": ALLOWLIST,
            "DEFAULT_INSTANCE_PROFILE": {"Ref": "RestoredInstanceProfileName"},
        },
    ),
    "CheckRestoredInstanceFunction": (
        "handlers.check_restored_instance.handler",
        {"TARGET_ROLE_NAME": ROLE_NAME, "TARGET_ROLE_EXTERNAL_ID": EXTERNAL_ID},
    ),
    "FinalizeCutoverFunction": ("handlers.finalize_cutover.handler", {"LEDGER_TABLE": LEDGER}),
    "CheckManagedInstanceFunction": (
        "handlers.check_managed_instance.handler",
        {"TARGET_ROLE_NAME": ROLE_NAME, "TARGET_ROLE_EXTERNAL_ID": EXTERNAL_ID},
    ),
    "SendAgentCommandFunction": (
        "handlers.send_agent_command.handler",
        {"LEDGER_TABLE": LEDGER, "TARGET_ROLE_NAME": ROLE_NAME, "TARGET_ROLE_EXTERNAL_ID": EXTERNAL_ID},
    ),
    "CheckAgentCommandFunction": (
        "handlers.check_agent_command.handler",
        {"TARGET_ROLE_NAME": ROLE_NAME, "TARGET_ROLE_EXTERNAL_ID": EXTERNAL_ID},
    ),
    "CleanUpFunction": ("handlers.clean_up.handler", {"LEDGER_TABLE": LEDGER, "SHARING_KEY_ARN": SHARING_KEY}),
    "RollBackFunction": (
        "handlers.roll_back.handler",
        {
            "LEDGER_TABLE": LEDGER,
            "SHARING_KEY_ARN": SHARING_KEY,
            "TARGET_ROLE_NAME": ROLE_NAME,
            "TARGET_ROLE_EXTERNAL_ID": EXTERNAL_ID,
        },
    ),
    "ReleaseServerFunction": (
        "handlers.release_server.handler",
        {"LEDGER_TABLE": LEDGER, "APPROVAL_TABLE": {"Ref": "ApprovalTable"},
         "NOTIFICATION_TOPIC_ARN": {"Ref": "NotificationTopic"}},
    ),
    "AwaitApprovalFunction": (
        "handlers.await_approval.handler",
        {"APPROVAL_TABLE": {"Ref": "ApprovalTable"}, "NOTIFICATION_TOPIC_ARN": {"Ref": "NotificationTopic"}},
    ),
    "SummarizeWaveFunction": (
        "handlers.summarize_wave.handler",
        {"NOTIFICATION_TOPIC_ARN": {"Ref": "NotificationTopic"}},
    ),
    "PreflightServerFunction": (
        "handlers.preflight_server.handler",
        {
            "SHARING_KEY_ARN": SHARING_KEY,
            "TARGET_ROLE_NAME": ROLE_NAME,
            "TARGET_ROLE_EXTERNAL_ID": EXTERNAL_ID,
            "DEFAULT_INSTANCE_PROFILE": {"Ref": "RestoredInstanceProfileName"},
            "DEFAULT_AGENT_CONFIG_PARAMETER": {"Ref": "DefaultAgentConfigParameter"},
        },
    ),
}

# Destructive or sharing EC2 actions: each Allow must be limited by a tag on the resource.
TAG_SCOPED_ACTIONS = {
    "ec2:DeregisterImage",
    "ec2:DeleteSnapshot",
    "ec2:ModifyImageAttribute",
    "ec2:ModifySnapshotAttribute",
    "ec2:TerminateInstances",
}


@pytest.fixture(scope="module")
def pipeline() -> dict[str, Any]:
    return load(PIPELINE_TEMPLATE)


@pytest.fixture(scope="module")
def target() -> dict[str, Any]:
    return load(TARGET_TEMPLATE)


def _resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == resource_type}


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _identity_statements(pipeline: dict[str, Any], target: dict[str, Any]) -> Iterator[tuple[str, dict]]:
    """Every statement of every identity policy in both templates, with its owner's name."""
    for name, resource in pipeline["Resources"].items():
        if resource["Type"] in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
            for policy in resource["Properties"].get("Policies", []):
                for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
                    yield name, statement
    for name, role in _resources(target, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                yield name, statement


def _allows(pipeline, target) -> list[tuple[str, dict]]:
    return [(name, s) for name, s in _identity_statements(pipeline, target) if s["Effect"] == "Allow"]


# --- cfn-lint ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [PIPELINE_TEMPLATE, TARGET_TEMPLATE], ids=lambda p: p.name)
def test_cfn_lint_reports_no_error_or_warning(path: Path):
    # GIVEN a template; WHEN cfn-lint runs with its default rules (errors and warnings)
    matches = lint_file(path, config=ManualArgs(regions=["us-east-1"]))

    # THEN it finds nothing (a check suppressed in the template's Metadata carries its reason there)
    assert [str(match) for match in matches] == []


# --- layout -----------------------------------------------------------------------------------


def test_pipeline_sections_come_in_order(pipeline):
    assert list(pipeline) == ["Transform", "Description", "Globals", "Parameters", "Conditions", "Resources", "Outputs"]


def test_target_sections_come_in_order(target):
    assert list(target) == ["AWSTemplateFormatVersion", "Description", "Parameters", "Conditions", "Resources", "Outputs"]


@pytest.mark.parametrize("path", [PIPELINE_TEMPLATE, TARGET_TEMPLATE], ids=lambda p: p.name)
def test_every_output_and_parameter_has_a_description(path: Path):
    template = load(path)
    assert [name for name, output in template["Outputs"].items() if not output.get("Description")] == []
    assert [name for name, parameter in template["Parameters"].items() if not parameter.get("Description")] == []


def test_globals_set_the_runtime_and_powertools(pipeline):
    function = pipeline["Globals"]["Function"]

    assert function["Runtime"] == "python3.13"
    assert function["CodeUri"] == "functions/"
    assert function["Timeout"] == 60
    assert function["MemorySize"] == 256
    assert function["Architectures"] == ["arm64"]
    assert function["Tracing"] == "Active"
    assert function["Environment"]["Variables"] == {
        "POWERTOOLS_SERVICE_NAME": "mgn-cross-account-cutover",
        "POWERTOOLS_METRICS_NAMESPACE": "MgnCutover",
        "LOG_LEVEL": "INFO",
        # The X-Ray SDK only when the stack is told to trace AWS calls: it doubles a cold start.
        "POWERTOOLS_TRACE_DISABLED": {"Fn::If": ["TraceAwsCallsEnabled", "false", "true"]},
    }
    assert pipeline["Parameters"]["TraceAwsCalls"]["Default"] == "false"


def test_secrets_are_no_echo(pipeline, target):
    assert pipeline["Parameters"]["TargetRoleExternalId"]["NoEcho"] is True
    assert pipeline["Parameters"]["TargetRoleExternalId"]["MinLength"] >= 16
    assert target["Parameters"]["ExternalId"]["NoEcho"] is True
    assert target["Parameters"]["ExternalId"]["MinLength"] >= 16


# --- functions --------------------------------------------------------------------------------


def test_the_functions_are_exactly_the_pipeline_steps(pipeline):
    assert set(_resources(pipeline, "AWS::Serverless::Function")) == set(FUNCTIONS)


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_function_handler_and_environment(pipeline, function):
    handler, environment = FUNCTIONS[function]
    properties = pipeline["Resources"][function]["Properties"]

    assert properties["Handler"] == handler
    assert properties["Environment"]["Variables"] == environment


def _resolvable(value: Any, parameters: set[str], resources: set[str]) -> bool:
    """Only the intrinsics the sandbox's resolver reads: Ref, GetAtt .Arn, Join, simple Sub."""
    if isinstance(value, str):
        return True
    if not isinstance(value, dict) or len(value) != 1:
        return False
    (function, argument), = value.items()
    if function == "Ref":
        return argument in parameters or argument in resources or argument.startswith("AWS::")
    if function == "Fn::GetAtt":
        return argument[0] in resources and argument[1] == "Arn"
    if function == "Fn::Join":
        delimiter, items = argument
        items = items if isinstance(items, list) else [items]
        return isinstance(delimiter, str) and all(_resolvable(item, parameters, resources) for item in items)
    if function == "Fn::Sub":
        return isinstance(argument, str)
    return False


def test_environment_values_use_only_intrinsics_the_sandbox_resolves(pipeline):
    parameters, resources = set(pipeline["Parameters"]), set(pipeline["Resources"])
    unresolvable = {
        f"{name}.{variable}"
        for name, function in _resources(pipeline, "AWS::Serverless::Function").items()
        for variable, value in function["Properties"]["Environment"]["Variables"].items()
        if not _resolvable(value, parameters, resources)
    }
    assert unresolvable == set()


def test_every_function_has_a_log_group_with_retention(pipeline):
    log_groups = {
        str(group["Properties"]["LogGroupName"].get("Fn::Sub")): group["Properties"]
        for group in _resources(pipeline, "AWS::Logs::LogGroup").values()
    }
    for function in FUNCTIONS:
        group = log_groups.get(f"/aws/lambda/${{{function}}}")
        assert group is not None, f"{function} has no log group"
        assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_function_roles_live_under_the_path_the_target_role_trusts(pipeline, target):
    # GIVEN the path every function role gets, and the principal pattern the target role admits
    role_path = pipeline["Globals"]["Function"]["RolePath"]["Fn::Sub"]
    trust = target["Resources"]["TargetRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    admitted = trust["Condition"]["ArnLike"]["aws:PrincipalArn"]["Fn::Sub"]

    # THEN both name the same path, with the pipeline's stack name in it
    assert role_path == "/mgn-cutover/${AWS::StackName}/"
    assert admitted == "arn:${AWS::Partition}:iam::${PipelineAccountId}:role/mgn-cutover/${PipelineStackName}/*"
    assert pipeline["Outputs"]["PipelineRolePath"]["Value"] == {"Fn::Sub": role_path}


# --- IAM --------------------------------------------------------------------------------------


def test_allow_statements_name_star_only_where_the_api_requires_it(pipeline, target):
    offenders = [
        f"{name}/{statement.get('Sid')}"
        for name, statement in _allows(pipeline, target)
        if "*" in _listify(statement["Resource"]) and not statement.get("Sid", "").endswith(REQUIRES_STAR)
    ]
    assert offenders == []


def test_star_statements_grant_only_actions_without_resource_types(pipeline, target):
    # Reads and log delivery: nothing in a RequiresStar statement may change a resource.
    read_prefixes = ("Describe", "Get", "List")
    log_delivery = {
        "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
    }
    offenders = [
        f"{name}/{statement['Sid']}: {action}"
        for name, statement in _allows(pipeline, target)
        if statement.get("Sid", "").endswith(REQUIRES_STAR)
        for action in _listify(statement["Action"])
        if action not in log_delivery and not action.split(":", 1)[1].startswith(read_prefixes)
    ]
    assert offenders == []


def test_no_identity_policy_grants_a_service_wildcard(pipeline, target):
    offenders = [
        f"{name}/{statement.get('Sid')}: {action}"
        for name, statement in _allows(pipeline, target)
        for action in _listify(statement["Action"])
        if action == "*" or action.endswith(":*")
    ]
    assert offenders == []


def test_destructive_ec2_actions_are_scoped_by_a_resource_tag(pipeline, target):
    offenders = []
    for name, statement in _allows(pipeline, target):
        if not TAG_SCOPED_ACTIONS & set(_listify(statement["Action"])):
            continue
        condition_keys = {key for block in statement.get("Condition", {}).values() for key in block}
        if not any(key.startswith("aws:ResourceTag/") for key in condition_keys):
            offenders.append(f"{name}/{statement.get('Sid')}")
    assert offenders == []


def test_tags_are_written_only_while_creating(pipeline, target):
    # Otherwise a role could tag any image as managed and then delete it.
    offenders = [
        f"{name}/{statement.get('Sid')}"
        for name, statement in _allows(pipeline, target)
        if "ec2:CreateTags" in _listify(statement["Action"])
        and "ec2:CreateAction" not in statement.get("Condition", {}).get("StringEquals", {})
    ]
    assert offenders == []


def test_assume_role_reaches_only_the_target_role_in_allowlisted_accounts(pipeline):
    statements = [
        (name, statement)
        for name, statement in _allows(pipeline, {"Resources": {}})
        if "sts:AssumeRole" in _listify(statement["Action"])
    ]
    assert {name for name, _ in statements} == {
        name for name, (_, environment) in FUNCTIONS.items() if "TARGET_ROLE_EXTERNAL_ID" in environment
    }
    for name, statement in statements:
        assert statement["Action"] == "sts:AssumeRole", name
        assert statement["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:iam::*:role/${TargetRoleName}"}, name
        assert statement["Condition"] == {"StringEquals": {"aws:ResourceAccount": {"Ref": "TargetAccountIds"}}}, name


def test_state_machine_may_invoke_every_function_and_nothing_else(pipeline):
    policies = pipeline["Resources"]["CutoverStateMachine"]["Properties"]["Policies"]
    invoked = {p["LambdaInvokePolicy"]["FunctionName"]["Ref"] for p in policies if "LambdaInvokePolicy" in p}

    assert invoked == set(FUNCTIONS)
    assert all(set(p) <= {"LambdaInvokePolicy", "Statement"} for p in policies)


def test_state_machine_substitutes_every_function_arn(pipeline):
    substitutions = pipeline["Resources"]["CutoverStateMachine"]["Properties"]["DefinitionSubstitutions"]

    assert substitutions == {f"{function}Arn": {"Fn::GetAtt": [function, "Arn"]} for function in FUNCTIONS}


# --- keys and sharing -------------------------------------------------------------------------


def _principals(statement: dict[str, Any]) -> list[Any]:
    principal = statement["Principal"]
    if principal == "*":
        return ["*"]
    return [value for kind in principal.values() for value in _listify(kind)] if "Ref" not in principal else [principal]


def test_sharing_key_admits_no_external_principal_but_the_allowlist(pipeline):
    # GIVEN the sharing key's policy
    statements = pipeline["Resources"]["SharingKey"]["Properties"]["KeyPolicy"]["Statement"]
    own_account = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
    allowlist = {"Ref": "TargetAccountIds"}

    # THEN every principal is this account (delegating to IAM) or the allowlist parameter
    for statement in statements:
        assert set(statement["Principal"]) == {"AWS"}, statement["Sid"]
        assert statement["Principal"]["AWS"] in (own_account, allowlist), statement["Sid"]

    # AND the allowlist may use the key only as EBS needs it, never administer it
    external = [s for s in statements if s["Principal"]["AWS"] == allowlist]
    assert {action for s in external for action in _listify(s["Action"])} == {
        "kms:DescribeKey",
        "kms:Decrypt",
        "kms:ReEncrypt*",
        "kms:GenerateDataKey*",
        "kms:CreateGrant",
    }
    grants = [s for s in external if "kms:CreateGrant" in _listify(s["Action"])]
    assert all(s["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": True}} for s in grants)


def test_target_accounts_are_a_validated_list(pipeline):
    parameter = pipeline["Parameters"]["TargetAccountIds"]

    assert parameter["Type"] == "CommaDelimitedList"
    assert parameter["AllowedPattern"] == r"^\d{12}$"
    assert "Default" not in parameter


def test_snapshots_are_shared_only_with_the_allowlist_and_never_publicly(pipeline):
    statements = pipeline["Resources"]["ShareImageFunction"]["Properties"]["Policies"][0]["Statement"]
    by_sid = {s["Sid"]: s for s in statements}

    share = by_sid["ShareManagedSnapshotsWithAllowlist"]
    assert share["Condition"]["ForAllValues:StringEquals"] == {"ec2:Add/userId": {"Ref": "TargetAccountIds"}}
    public = by_sid["NeverSharePublicly"]
    assert public["Effect"] == "Deny"
    assert public["Condition"] == {"Null": {"ec2:Add/group": "false"}}


def test_notification_topic_is_encrypted_with_a_key_alarms_can_use(pipeline):
    topic = pipeline["Resources"]["NotificationTopic"]["Properties"]
    key = pipeline["Resources"]["NotificationKey"]["Properties"]
    services = [s["Principal"].get("Service") for s in key["KeyPolicy"]["Statement"]]

    assert topic["KmsMasterKeyId"] == {"Ref": "NotificationKey"}
    assert "cloudwatch.amazonaws.com" in services


# --- events and alarms ------------------------------------------------------------------------


def test_mgn_launch_rule_is_disabled_unless_the_parameter_is_true(pipeline):
    # GIVEN the MGN launch result rule
    events = pipeline["Resources"]["CutoverStateMachine"]["Properties"]["Events"]
    rule = events["MgnCutoverLaunched"]["Properties"]

    # THEN its state follows a condition that holds only for "true", and the default is "false"
    condition, enabled, disabled = rule["State"]["Fn::If"]
    assert (enabled, disabled) == ("ENABLED", "DISABLED")
    assert pipeline["Conditions"][condition] == {"Fn::Equals": [{"Ref": "EnableMgnLaunchEvents"}, "true"]}
    assert pipeline["Parameters"]["EnableMgnLaunchEvents"]["Default"] == "false"
    assert pipeline["Parameters"]["EnableMgnLaunchEvents"]["AllowedValues"] == ["false", "true"]

    # AND it matches only successful cutover launches
    assert rule["Pattern"] == {
        "source": ["aws.mgn"],
        "detail-type": ["MGN Source Server Launch Result"],
        "detail": {"state": ["CUTOVER_LAUNCH_SUCCEEDED"]},
    }


def test_custom_request_rule_matches_the_documented_event(pipeline):
    events = pipeline["Resources"]["CutoverStateMachine"]["Properties"]["Events"]
    rule = events["CutoverRequested"]

    assert rule["Type"] == "EventBridgeRule"
    assert rule["Properties"]["Pattern"] == {"source": ["mgn-cutover"], "detail-type": ["Cutover Requested"]}
    assert "State" not in rule["Properties"]


def test_failed_executions_raise_an_alarm_on_the_topic(pipeline):
    alarms = _resources(pipeline, "AWS::CloudWatch::Alarm").values()
    failed = [a["Properties"] for a in alarms if a["Properties"]["MetricName"] == "ExecutionsFailed"]

    assert len(failed) == 1
    assert failed[0]["Namespace"] == "AWS/States"
    assert failed[0]["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": "CutoverStateMachine"}}]
    assert failed[0]["AlarmActions"] == [{"Ref": "NotificationTopic"}]


# --- target account ---------------------------------------------------------------------------


def test_target_role_trusts_only_the_pipeline_with_the_external_id(target):
    # GIVEN the target role's trust policy
    trust = target["Resources"]["TargetRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]

    # THEN one statement admits the migration account's pipeline roles, and only with the external id
    assert len(trust) == 1
    statement = trust[0]
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Principal"] == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${PipelineAccountId}:root"}}
    assert statement["Condition"]["StringEquals"] == {"sts:ExternalId": {"Ref": "ExternalId"}}
    assert "aws:PrincipalArn" in statement["Condition"]["ArnLike"]


def test_target_role_passes_only_the_restored_instance_role(target):
    statements = [
        s
        for _, s in _allows({"Resources": {}}, target)
        if "iam:PassRole" in _listify(s["Action"])
    ]

    assert len(statements) == 1
    assert statements[0]["Resource"] == {"Fn::GetAtt": ["RestoredInstanceRole", "Arn"]}
    assert statements[0]["Condition"] == {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}


def test_target_role_runs_only_the_agent_documents_on_managed_instances(target):
    statements = [
        s for _, s in _allows({"Resources": {}}, target) if "ssm:SendCommand" in _listify(s["Action"])
    ]
    documents = {
        resource["Fn::Sub"].rsplit("/", 1)[1]
        for s in statements
        for resource in _listify(s["Resource"])
        if ":document/" in resource["Fn::Sub"]
    }
    instances = [s for s in statements if any(":instance/" in r["Fn::Sub"] for r in _listify(s["Resource"]))]

    assert documents == {"AWS-ConfigureAWSPackage", "AmazonCloudWatch-ManageAgent"}
    assert [s["Condition"] for s in instances] == [{"StringEquals": {"aws:ResourceTag/mgn-cutover:managed": "true"}}]


def test_target_role_launches_only_managed_instances(target):
    statements = [s for _, s in _allows({"Resources": {}}, target) if "ec2:RunInstances" in _listify(s["Action"])]
    instance_statements = [
        s for s in statements if any(":instance/" in r["Fn::Sub"] for r in _listify(s["Resource"]))
    ]

    assert [s["Condition"] for s in instance_statements] == [
        {"StringEquals": {"aws:RequestTag/mgn-cutover:managed": "true"}}
    ]


def test_restored_instances_get_ssm_and_the_cloudwatch_agent(target):
    role = target["Resources"]["RestoredInstanceRole"]["Properties"]
    profile = target["Resources"]["RestoredInstanceProfile"]["Properties"]

    assert {arn["Fn::Sub"].rsplit("/", 1)[1] for arn in role["ManagedPolicyArns"]} == {
        "AmazonSSMManagedInstanceCore",
        "CloudWatchAgentServerPolicy",
    }
    assert profile["InstanceProfileName"] == {"Ref": "InstanceProfileName"}
    assert target["Parameters"]["InstanceProfileName"]["Default"] == "MgnCutoverRestoredInstance"


def test_target_key_is_optional_rotated_and_outlives_the_stack(target):
    key = target["Resources"]["TargetKey"]

    assert key["Condition"] == "CreatesTargetKey"
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == "Retain"
    assert target["Resources"]["TargetKeyAlias"]["Properties"]["AliasName"] == "alias/mgn-cutover-target"


def test_role_names_match_across_the_two_templates(pipeline, target):
    assert pipeline["Parameters"]["TargetRoleName"]["Default"] == target["Parameters"]["RoleName"]["Default"]
    assert target["Resources"]["TargetRole"]["Properties"]["RoleName"] == {"Ref": "RoleName"}
