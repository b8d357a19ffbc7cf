"""Least privilege, proven by rehearsal: every AWS call a function makes is checked against its policy.

While a Sandbox runs, a botocore handler sees each call the handlers make, knows which function made it
(the runner sets `current_function` around each invocation) and with which credentials (the function's
own role in the migration account, or the target role a function assumed in a target account). It builds
what IAM would evaluate -- the action, the ARN of every resource the call touches (per the Service
Authorization Reference), the condition keys -- and evaluates it against the function's policy in
`template.yaml`, or the target role's policy in `templates/target-account.yaml`. A call no statement allows
is refused as AWS would refuse it (AccessDenied, or UnauthorizedOperation for EC2), and recorded.

Which (statement, action) pairs allowed some call is recorded too, so a report can list, per role, what
is granted and never used.

NOTE: the KMS calls EBS makes on a caller's behalf during CopyImage and RunInstances (CreateGrant,
Decrypt, ReEncrypt*, GenerateDataKey* through EC2) are not modelled: moto's EC2 never calls KMS. The
statements that exist for them are listed in docs/iam.md as granted for EBS, not proven here.
NOTE: the state machine's own role is not evaluated: moto's interpreter makes its calls in-process.
"""

from __future__ import annotations

import contextvars
import copy
import fnmatch
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import botocore.handlers
from botocore.exceptions import ClientError

from sandbox import template as cfn

# The function whose handler is running in this thread (its logical id), set by the runner.
current_function: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_function", default=None)

TARGET_ROLE = "TargetRole"
# Condition keys the sandbox can know for a call. A policy condition on any other key is taken as not
# satisfied, so a test shows it rather than the sandbox guessing.
KNOWN_KEYS = {"aws:resourceaccount", "aws:principalarn", "aws:tagkeys", "ec2:createaction", "ec2:owner",
              "ec2:add/userid", "ec2:add/group", "ec2:remove/userid", "ec2:remove/group",
              "kms:grantisforawsresource", "kms:viaservice", "kms:granteeprincipal", "kms:grantoperations",
              "kms:retiringprincipal", "iam:passedtoservice", "sts:externalid"}
KNOWN_PREFIXES = ("aws:resourcetag/", "aws:requesttag/")
# EC2's query API answers a refused call with its own code; the JSON services say AccessDenied(Exception).
_DENIED_CODE = {"ec2": "UnauthorizedOperation", "sts": "AccessDenied", "sns": "AuthorizationError"}


@dataclass
class Request:
    """What IAM evaluates for one call: one action on one or more resources, in one context."""

    action: str
    resources: list[str]
    context: dict[str, Any] = field(default_factory=dict)


@dataclass
class Decision:
    function: str
    role: str
    principal: str
    operation: str
    request: Request
    allowed: bool
    resource: str | None = None

    def describe(self) -> str:
        return f"{self.function} ({self.role}) {self.request.action} on {self.resource or self.request.resources}"


class Policy:
    """The statements of one role's identity policy, with their Sids, resolved to plain values."""

    def __init__(self, statements: list[dict]):
        self.statements = [_normalized(s, index) for index, s in enumerate(statements)]

    def grants(self) -> set[tuple[str, str]]:
        return {(s["Sid"], action) for s in self.statements if s["Effect"] == "Allow" for action in s["Action"]}

    def evaluate(self, request: Request) -> tuple[bool, str | None, set[tuple[str, str]]]:
        """(allowed, the first resource refused, the (Sid, action) pairs that allowed it)."""
        used: set[tuple[str, str]] = set()
        for resource in request.resources:
            allowing = set()
            for statement in self.statements:
                action = _matching_action(statement, request.action)
                if action is None or not _matches_resource(statement, resource):
                    continue
                if not _conditions_hold(statement.get("Condition", {}), request.context):
                    continue
                if statement["Effect"] == "Deny":
                    return False, resource, set()
                allowing.add((statement["Sid"], action))
            if not allowing:
                return False, resource, set()
            used |= allowing
        return True, None, used


def _normalized(statement: dict, index: int) -> dict:
    resources = statement.get("Resource", [])
    return {**statement, "Sid": statement.get("Sid") or f"Statement{index}",
            "Action": _as_list(statement.get("Action")), "Resource": _as_list(resources)}


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _matching_action(statement: dict, action: str) -> str | None:
    # IAM matches action names case-insensitively, with * and ? wildcards.
    return next((pattern for pattern in statement["Action"] if fnmatch.fnmatchcase(action.lower(), pattern.lower())),
                None)


def _matches_resource(statement: dict, resource: str) -> bool:
    return any(_glob(pattern, resource) for pattern in statement["Resource"])


def _glob(pattern: str, value: str) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


# --- conditions -------------------------------------------------------------------------------------------------


def _conditions_hold(conditions: dict, context: dict[str, Any]) -> bool:
    lowered = {key.lower(): value for key, value in context.items()}
    for operator, tests in conditions.items():
        for key, expected in tests.items():
            if not _condition(operator, key.lower(), _as_list(expected), lowered):
                return False
    return True


def _known(key: str) -> bool:
    return key in KNOWN_KEYS or key.startswith(KNOWN_PREFIXES)


def _condition(operator: str, key: str, expected: list, context: dict[str, Any]) -> bool:
    if not _known(key):
        return False
    present = key in context
    values = [str(v) for v in _as_list(context.get(key))]
    expected = [str(v).lower() if operator.endswith(("Bool", "Null")) else str(v) for v in expected]
    if operator == "Null":
        return (not present) == (expected[0] == "true")
    qualifier, _, base = operator.rpartition(":")
    base = base.removesuffix("IfExists")
    if operator.endswith("IfExists") and not present:
        return True
    compare = _COMPARISONS.get(base)
    if compare is None:
        return False
    if qualifier == "ForAllValues":
        # As in IAM: true when the key is absent or every value it has matches one expected value.
        return all(any(compare(value, wanted) for wanted in expected) for value in values)
    if qualifier == "ForAnyValue":
        return any(compare(value, wanted) for value in values for wanted in expected)
    negated = base.startswith(("StringNot", "ArnNot"))
    if not present:
        return negated
    if negated:
        # A negated operator holds when the value equals none of the expected ones.
        return all(compare(value, wanted) for value in values for wanted in expected)
    return any(compare(value, wanted) for value in values for wanted in expected)


_COMPARISONS = {
    "StringEquals": lambda value, wanted: value == wanted,
    "StringNotEquals": lambda value, wanted: value != wanted,
    "StringEqualsIgnoreCase": lambda value, wanted: value.lower() == wanted.lower(),
    "StringLike": lambda value, wanted: _glob(wanted, value),
    "StringNotLike": lambda value, wanted: not _glob(wanted, value),
    "ArnEquals": lambda value, wanted: value == wanted,
    "ArnLike": lambda value, wanted: _glob(wanted, value),
    "ArnNotLike": lambda value, wanted: not _glob(wanted, value),
    "Bool": lambda value, wanted: value.lower() == wanted,
}


# --- the policies of the stack ------------------------------------------------------------------------------------


def function_policies(template: dict, resolver: cfn.Resolver) -> dict[str, Policy]:
    """Each function's inline statements (its `Policies` entries with a `Statement`), resolved."""
    found = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        statements = []
        for entry in resource.get("Properties", {}).get("Policies", []):
            if isinstance(entry, dict) and "Statement" in entry:
                statements.extend(resolver.resolve(entry["Statement"]))
        found[logical_id] = Policy(statements)
    return found


def target_role_policy(account_id: str, parameters: dict[str, str], restored_role_arn: str) -> Policy:
    """The target role's policy in `templates/target-account.yaml`, as deployed in `account_id`."""
    template = cfn.load(cfn.TARGET_TEMPLATE)
    resolver = cfn.Resolver(template, parameters, {"AWS::AccountId": account_id, "AWS::Region": "us-east-1"},
                            {"RestoredInstanceRole": restored_role_arn})
    role = template["Resources"]["TargetRole"]["Properties"]
    statements = [s for p in role["Policies"] for s in resolver.resolve(p["PolicyDocument"]["Statement"])]
    return Policy(statements)


# --- what a call asks for -----------------------------------------------------------------------------------------


class Requests:
    """Builds the IAM requests of one call from its parameters and what the simulated accounts hold."""

    def __init__(self, account: str, region: str, principal: str):
        self.account, self.region, self.principal = account, region, principal

    def of(self, service: str, operation: str, params: dict) -> list[Request]:
        builder = getattr(self, f"_{service}_{_snake(operation)}", None)
        action = f"{_IAM_PREFIX.get(service, service)}:{operation}"
        requests = builder(action, params) if builder else [Request(action, self._generic_resources(service, params))]
        for request in requests:
            request.context.setdefault("aws:PrincipalArn", self.principal)
            request.context.setdefault("aws:ResourceAccount", self.account)
        return requests

    def _generic_resources(self, service: str, params: dict) -> list[str]:
        if service == "dynamodb" and "TableName" in params:
            return [f"arn:aws:dynamodb:{self.region}:{self.account}:table/{params['TableName']}"]
        if service == "sns" and "TopicArn" in params:
            return [params["TopicArn"]]
        if service == "mgn" and "resourceArn" in params:
            return [params["resourceArn"]]
        return ["*"]

    # -- EC2 -------------------------------------------------------------------------------------

    def _arn(self, kind: str, resource_id: str, owned: bool = True) -> str:
        # Image and snapshot ARNs carry no account; every other EC2 ARN does.
        account = self.account if owned else ""
        return f"arn:aws:ec2:{self.region}:{account}:{kind}/{resource_id}"

    def _ec2_create_image(self, action: str, params: dict) -> list[Request]:
        instance = _ec2_resource(self.account, self.region, "instance", params["InstanceId"])
        created = [self._arn("image", "*", owned=False), self._arn("snapshot", "*", owned=False)]
        return [Request(action, [self._arn("instance", params["InstanceId"])], _resource_tags(instance)),
                Request(action, created), *self._tagging(params, "CreateImage")]

    def _ec2_copy_image(self, action: str, params: dict) -> list[Request]:
        source = self._arn("image", params["SourceImageId"], owned=False)
        return [Request(action, [source, self._arn("image", "*", owned=False)]), *self._tagging(params, "CopyImage")]

    def _ec2_modify_image_attribute(self, action: str, params: dict) -> list[Request]:
        image = _ec2_resource(self.account, self.region, "image", params["ImageId"])
        return [Request(action, [self._arn("image", params["ImageId"], owned=False)], _resource_tags(image))]

    def _ec2_deregister_image(self, action: str, params: dict) -> list[Request]:
        return self._ec2_modify_image_attribute(action, params)

    def _ec2_modify_snapshot_attribute(self, action: str, params: dict) -> list[Request]:
        snapshot = _ec2_resource(self.account, self.region, "snapshot", params["SnapshotId"])
        context = _resource_tags(snapshot)
        verb = "Add" if params.get("OperationType") == "add" else "Remove"
        if params.get("UserIds"):
            context[f"ec2:{verb}/userId"] = list(params["UserIds"])
        if params.get("GroupNames"):
            context[f"ec2:{verb}/group"] = list(params["GroupNames"])
        return [Request(action, [self._arn("snapshot", params["SnapshotId"], owned=False)], context)]

    def _ec2_delete_snapshot(self, action: str, params: dict) -> list[Request]:
        snapshot = _ec2_resource(self.account, self.region, "snapshot", params["SnapshotId"])
        return [Request(action, [self._arn("snapshot", params["SnapshotId"], owned=False)], _resource_tags(snapshot))]

    def _ec2_terminate_instances(self, action: str, params: dict) -> list[Request]:
        return [Request(action, [self._arn("instance", instance_id)],
                        _resource_tags(_ec2_resource(self.account, self.region, "instance", instance_id)))
                for instance_id in params["InstanceIds"]]

    def _ec2_run_instances(self, action: str, params: dict) -> list[Request]:
        image = _ec2_resource(self.account, self.region, "image", params["ImageId"])
        owner = getattr(image, "owner_id", None) or self.account
        instance_tags = _request_tags(params, "instance")
        groups = params.get("SecurityGroupIds", [])
        subnet = params.get("SubnetId")
        network = [self._arn("network-interface", "*"), self._arn("volume", "*")]
        network += [self._arn("subnet", subnet)] if subnet else []
        network += [self._arn("security-group", group) for group in groups]
        snapshots = [self._arn("snapshot", sid, owned=False) for sid in _image_snapshot_ids(image)]
        requests = [Request(action, [self._arn("instance", "*")], instance_tags),
                    Request(action, [self._arn("image", params["ImageId"], owned=False)], {"ec2:Owner": owner}),
                    Request(action, network), *([Request(action, snapshots)] if snapshots else []),
                    *self._tagging(params, "RunInstances")]
        profile = (params.get("IamInstanceProfile") or {}).get("Name")
        if profile:
            requests.append(Request("iam:PassRole", [profile_role_arn(self.account, profile)],
                                    {"iam:PassedToService": "ec2.amazonaws.com"}))
        return requests

    def _tagging(self, params: dict, create_action: str) -> list[Request]:
        # Tags given in TagSpecifications are written by an implicit ec2:CreateTags on each new resource.
        requests = []
        for spec in params.get("TagSpecifications", []):
            kind = spec["ResourceType"]
            resource = self._arn(kind, "*", owned=kind not in ("image", "snapshot"))
            context = {"ec2:CreateAction": create_action, **_request_tags(params, kind)}
            requests.append(Request("ec2:CreateTags", [resource], context))
        return requests

    def _ec2_create_tags(self, action: str, params: dict) -> list[Request]:
        tags = {f"aws:RequestTag/{t['Key']}": t["Value"] for t in params.get("Tags", [])}
        tags["aws:TagKeys"] = [t["Key"] for t in params.get("Tags", [])]
        return [Request(action, [self._arn(_kind_of(rid), rid, owned=_kind_of(rid) not in ("image", "snapshot"))],
                        dict(tags)) for rid in params.get("Resources", [])]

    # -- KMS, STS, MGN, SSM ----------------------------------------------------------------------------

    def _key_arn(self, key_id: str) -> str:
        from sandbox import aws_rules

        arn = aws_rules.key_arn(key_id, self.account, self.region)
        return arn if arn and arn.startswith("arn:") else f"arn:aws:kms:{self.region}:{self.account}:key/{key_id}"

    def _kms_create_grant(self, action: str, params: dict) -> list[Request]:
        context = {"kms:GranteePrincipal": params["GranteePrincipal"], "kms:GrantOperations": params["Operations"],
                   "kms:GrantIsForAWSResource": "false"}
        if params.get("RetiringPrincipal"):
            context["kms:RetiringPrincipal"] = params["RetiringPrincipal"]
        return [Request(action, [self._key_arn(params["KeyId"])], context)]

    def _kms_revoke_grant(self, action: str, params: dict) -> list[Request]:
        return [Request(action, [self._key_arn(params["KeyId"])])]

    _kms_list_grants = _kms_revoke_grant
    _kms_retire_grant = _kms_revoke_grant
    _kms_describe_key = _kms_revoke_grant

    def _sts_assume_role(self, action: str, params: dict) -> list[Request]:
        arn = params["RoleArn"]
        context = {"aws:ResourceAccount": arn.split(":")[4]}
        if "ExternalId" in params:
            context["sts:ExternalId"] = params["ExternalId"]
        return [Request(action, [arn], context)]

    def _server_arn(self, server_id: str) -> str:
        return f"arn:aws:mgn:{self.region}:{self.account}:source-server/{server_id}"

    def _mgn_start_cutover(self, action: str, params: dict) -> list[Request]:
        requests = [Request(action, [self._server_arn(s) for s in params["sourceServerIDs"]])]
        if params.get("tags"):
            context = {f"aws:RequestTag/{k}": v for k, v in params["tags"].items()}
            context["aws:TagKeys"] = list(params["tags"])
            requests.append(Request("mgn:TagResource", [f"arn:aws:mgn:{self.region}:{self.account}:job/*"], context))
        return requests

    def _mgn_finalize_cutover(self, action: str, params: dict) -> list[Request]:
        return [Request(action, [self._server_arn(params["sourceServerID"])])]

    _mgn_change_server_life_cycle_state = _mgn_finalize_cutover
    _mgn_get_launch_configuration = _mgn_finalize_cutover
    _mgn_get_replication_configuration = _mgn_finalize_cutover
    _kms_get_key_policy = _kms_revoke_grant

    def _iam_get_instance_profile(self, action: str, params: dict) -> list[Request]:
        return [Request(action, [f"arn:aws:iam::{self.account}:instance-profile/{params['InstanceProfileName']}"])]

    def _ssm_send_command(self, action: str, params: dict) -> list[Request]:
        name = params["DocumentName"]
        # AWS-owned documents have no account in their ARN.
        document = f"arn:aws:ssm:{self.region}::document/{name}" if name.startswith(("AWS-", "Amazon")) else (
            f"arn:aws:ssm:{self.region}:{self.account}:document/{name}")
        requests = [Request(action, [document])]
        for instance_id in params.get("InstanceIds", []):
            instance = _ec2_resource(self.account, self.region, "instance", instance_id)
            requests.append(Request(action, [self._arn("instance", instance_id)], _resource_tags(instance)))
        return requests


_IAM_PREFIX = {"stepfunctions": "states"}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _kind_of(resource_id: str) -> str:
    prefix = resource_id.split("-", 1)[0]
    return {"i": "instance", "ami": "image", "snap": "snapshot", "vol": "volume", "eni": "network-interface",
            "sg": "security-group", "subnet": "subnet"}.get(prefix, prefix)


def _request_tags(params: dict, kind: str) -> dict[str, Any]:
    tags = [t for spec in params.get("TagSpecifications", []) if spec["ResourceType"] == kind for t in spec["Tags"]]
    context: dict[str, Any] = {f"aws:RequestTag/{t['Key']}": t["Value"] for t in tags}
    context["aws:TagKeys"] = [t["Key"] for t in tags]
    return context


def _ec2_resource(account: str, region: str, kind: str, resource_id: str) -> Any:
    from sandbox import aws_rules

    backend = aws_rules.ec2_backend(account, region)
    try:
        if kind == "instance":
            return backend.get_instance(resource_id)
        if kind == "image":
            return aws_rules.find_image(backend, resource_id)
        if kind == "snapshot":
            return backend.snapshots.get(resource_id)
    except Exception:  # noqa: BLE001 - a missing resource has no tags; the call itself will say it is missing
        return None
    return None


def _resource_tags(resource: Any) -> dict[str, Any]:
    if resource is None or not hasattr(resource, "get_tags"):
        return {}
    from sandbox import aws_rules

    try:
        tags = aws_rules.tags_of(resource)
    except Exception:  # noqa: BLE001 - a shared view of another account's resource shows no tags
        return {}
    return {f"aws:ResourceTag/{key}": value for key, value in tags.items()}


def _image_snapshot_ids(image: Any) -> list[str]:
    if image is None:
        return []
    from sandbox import aws_rules

    return [snapshot.id for snapshot in aws_rules.image_snapshots(image)]


def profile_role_arn(account: str, profile: str) -> str:
    from moto.iam.models import iam_backends

    found = iam_backends[account]["aws"].instance_profiles.get(profile)
    if found is None:
        return f"arn:aws:iam::{account}:role/unknown-role-of-{profile}"
    return found.roles[0].arn if found.roles else f"arn:aws:iam::{account}:role/none"


# --- the guard -------------------------------------------------------------------------------------------------


class Guard:
    """Records and evaluates every call the pipeline's functions make while it is installed."""

    def __init__(self, policies: dict[str, Policy], migration_account: str, region: str, role_arn,
                 target_policy, enforce: bool = True):
        self.policies = policies
        self.migration_account = migration_account
        self.region = region
        self._role_arn = role_arn
        self._target_policy = target_policy
        self._target_policies: dict[str, Policy] = {}
        self.enforce = enforce
        self.decisions: list[Decision] = []
        self.used: dict[str, set[tuple[str, str]]] = defaultdict(set)
        # Credentials the pipeline was given by AssumeRole: access key -> (account, assumed role ARN).
        self.sessions: dict[str, tuple[str, str]] = {}
        self._assumed_by: set[tuple[str, str]] = set()
        self.issued_secrets: set[str] = set()
        self._entries = [("before-parameter-build", self._keep_params), ("before-call", self._check),
                         ("after-call.sts.AssumeRole", self._remember_session)]

    def install(self) -> None:
        botocore.handlers.BUILTIN_HANDLERS.extend(self._entries)

    def uninstall(self) -> None:
        for entry in self._entries:
            if entry in botocore.handlers.BUILTIN_HANDLERS:
                botocore.handlers.BUILTIN_HANDLERS.remove(entry)

    @property
    def denied(self) -> list[Decision]:
        return [decision for decision in self.decisions if not decision.allowed]

    def grants(self) -> dict[str, set[tuple[str, str]]]:
        granted = {role: policy.grants() for role, policy in self.policies.items()}
        for policy in self._target_policies.values():
            granted.setdefault(TARGET_ROLE, set()).update(policy.grants())
        return granted

    def target_policy(self, account: str) -> Policy:
        if account not in self._target_policies:
            self._target_policies[account] = self._target_policy(account)
        return self._target_policies[account]

    # -- the handlers ------------------------------------------------------------------------------

    def _keep_params(self, params: dict, context: dict, **_: Any) -> None:
        if current_function.get() is not None:
            context["sandbox_iam_params"] = copy.deepcopy(params)

    def _check(self, model: Any, context: dict, request_signer: Any = None, **_: Any) -> None:
        function = current_function.get()
        if function is None or "sandbox_iam_params" not in context:
            return
        params = context["sandbox_iam_params"]
        service = model.service_model.endpoint_prefix
        service = {"states": "stepfunctions"}.get(service, service)
        access_key = _access_key(request_signer)
        if access_key in self.sessions:
            self._check_own_assume_role(function, access_key)
        account, role, principal, policy = self._identity(function, access_key)
        self._evaluate(function, role, principal, policy, model.name, service,
                       Requests(account, self.region, principal).of(service, model.name, params))

    def _evaluate(self, function: str, role: str, principal: str, policy: Policy, operation: str, service: str,
                  requests: list[Request]) -> None:
        for request in requests:
            allowed, refused, used = policy.evaluate(request)
            self.used[role] |= used
            self.decisions.append(Decision(function, role, principal, operation, request, allowed, refused))
            if not allowed and self.enforce:
                raise _access_denied(service, operation, principal, request.action, refused)

    def _check_own_assume_role(self, function: str, access_key: str) -> None:
        # The pipeline caches assumed-role sessions per process, and in the sandbox every function
        # shares the process; on Lambda each function has its own environment and assumes the role
        # itself. So the first use of a session by a function is checked as its own AssumeRole.
        if (function, access_key) in self._assumed_by:
            return
        self._assumed_by.add((function, access_key))
        account, role_arn = self.sessions[access_key]
        request = Request("sts:AssumeRole", [role_arn], {"aws:ResourceAccount": account,
                                                         "aws:PrincipalArn": self._role_arn(function)})
        self._evaluate(function, function, self._role_arn(function), self.policies[function], "AssumeRole", "sts",
                       [request])

    def _identity(self, function: str, access_key: str | None) -> tuple[str, str, str, Policy]:
        if access_key in self.sessions:
            account, role_arn = self.sessions[access_key]
            return account, TARGET_ROLE, role_arn, self.target_policy(account)
        return self.migration_account, function, self._role_arn(function), self.policies[function]

    def _remember_session(self, parsed: dict, context: dict, **_: Any) -> None:
        if current_function.get() is None or "Credentials" not in parsed:
            return
        credentials = parsed["Credentials"]
        arn = context.get("sandbox_iam_params", {}).get("RoleArn", "")
        self.sessions[credentials["AccessKeyId"]] = (arn.split(":")[4] if arn else "", arn)
        self._assumed_by.add((current_function.get(), credentials["AccessKeyId"]))
        self.issued_secrets |= {credentials["AccessKeyId"], credentials["SecretAccessKey"],
                                credentials["SessionToken"]}

    # -- the report -------------------------------------------------------------------------------

    def unused(self) -> dict[str, list[tuple[str, str]]]:
        return unused(self.grants(), self.used)


def unused(grants: dict[str, set[tuple[str, str]]], used: dict[str, set[tuple[str, str]]]) -> dict[str, list]:
    return {role: sorted(granted - used.get(role, set())) for role, granted in sorted(grants.items())
            if granted - used.get(role, set())}


def _access_key(request_signer: Any) -> str | None:
    credentials = getattr(request_signer, "_credentials", None)
    if credentials is None:
        return None
    return credentials.get_frozen_credentials().access_key


def _access_denied(service: str, operation: str, principal: str, action: str, resource: str | None) -> ClientError:
    code = _DENIED_CODE.get(service, "AccessDeniedException")
    message = (f"User: {principal} is not authorized to perform: {action} on resource: {resource or '*'} "
               f"because no identity-based policy allows the {action} action")
    if code == "UnauthorizedOperation":
        message = f"You are not authorized to perform this operation. {message}"
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": 403}}, operation)


# --- the scenarios and the report ---------------------------------------------------------------------------------

EXPLANATIONS = cfn.ROOT / "docs" / "iam.md"


@dataclass
class Scenario:
    name: str
    request: str
    world: str | None = None
    # Changes the world before the rehearsal (given the Sandbox), for a failure a world file cannot describe;
    # or "launchFails" (the second server's launch fails), or "approve" (the approval gate on, and approved).
    prepare: Any = None


def _remove_first_security_group(sandbox: Any) -> None:
    target = sandbox.request["servers"][0]["target"]
    sandbox.world.client("ec2", target["accountId"]).delete_security_group(GroupId=target["securityGroupIds"][0])


def _first_server_only(request: dict) -> dict:
    return {**request, "servers": request["servers"][:1]}


SCENARIOS = [
    Scenario("console wave", "events/console-wave.json"),
    Scenario("MGN console launch event", "events/mgn-launch-result.json", "sandbox/worlds/mgn-console-launch.json"),
    Scenario("MGN wave", "events/mgn-wave.json", "sandbox/worlds/mgn-wave.json"),
    Scenario("cutover launch fails in MGN", "events/console-wave.json", None, "launchFails"),
    Scenario("restore fails in the target account", "events/console-wave.json", None, _remove_first_security_group),
    Scenario("approval gate, approved", "events/console-wave.json", None, "approve"),
    Scenario("preflight wave", "events/preflight-wave.json", "sandbox/worlds/preflight-problems.json"),
]


@dataclass
class Report:
    """Across the scenarios: every call refused, and per role what was granted and what was used."""

    outcomes: dict[str, str]
    denied: list[Decision]
    granted: dict[str, set[tuple[str, str]]]
    used: dict[str, set[tuple[str, str]]]
    # What the scenarios showed the outside world (execution output and history, notifications), and
    # every credential the sandbox issued: for the check that none leaks.
    shown: list[str] = field(default_factory=list)
    issued_secrets: set[str] = field(default_factory=set)

    def unused(self) -> dict[str, list[tuple[str, str]]]:
        return unused(self.granted, self.used)

    def unexplained(self, explained: dict[tuple[str, str, str], str]) -> list[tuple[str, str, str]]:
        return [(role, sid, action) for role, pairs in self.unused().items() for sid, action in pairs
                if (role, sid, action) not in explained]

    def stale_explanations(self, explained: dict[tuple[str, str, str], str]) -> list[tuple[str, str, str]]:
        """Explanations of permissions that are used after all, or no longer granted."""
        unused_now = {(role, sid, action) for role, pairs in self.unused().items() for sid, action in pairs}
        return sorted(set(explained) - unused_now)

    def render(self, explained: dict[tuple[str, str, str], str]) -> str:
        lines = ["Scenarios:"] + [f"  {name}: {status}" for name, status in self.outcomes.items()]
        lines.append(f"Calls refused by the policies: {len(self.denied)}")
        lines += [f"  DENIED {decision.describe()}" for decision in self.denied]
        for role in sorted(self.granted):
            used = self.used.get(role, set())
            lines.append(f"{role}: {len(used & self.granted[role])} of {len(self.granted[role])} permissions used")
            for sid, action in self.unused().get(role, []):
                reason = explained.get((role, sid, action), "UNEXPLAINED")
                lines.append(f"  unused {sid} {action}: {reason}")
        return "\n".join(lines)


def rehearse_scenarios(scenarios: list[Scenario] = SCENARIOS, log_stream: Any = None) -> Report:
    from sandbox.runner import Sandbox, load_json

    outcomes, denied, shown, secrets = {}, [], [], set()
    granted: dict[str, set] = defaultdict(set)
    used: dict[str, set] = defaultdict(set)
    for scenario in scenarios:
        request = load_json(cfn.ROOT / scenario.request)
        world = load_json(cfn.ROOT / scenario.world) if scenario.world else {}
        if scenario.prepare == "launchFails":
            world = {"servers": {request["servers"][1]["sourceServerId"]: {"launchFails": True}}}
        elif callable(scenario.prepare):
            request = _first_server_only(request)
        elif scenario.prepare == "approve":
            request = {**request, "options": {**request.get("options", {}), "approval": {"required": True}}}
        with Sandbox(request, world, log_stream=log_stream) as sandbox:
            if callable(scenario.prepare):
                scenario.prepare(sandbox)
            elif scenario.prepare == "approve":
                # Answered as soon as the wave waits at its gate, as an operator would.
                sandbox.gate_answer = ("approve", "iam-scenario", None)
            rehearsal = sandbox.rehearse()
            outcomes[scenario.name] = rehearsal.status
            shown += [json.dumps(rehearsal.output), json.dumps(rehearsal.cause), json.dumps(rehearsal.notifications),
                      _histories(sandbox)]
            secrets |= sandbox.iam.issued_secrets | {v for c in sandbox.world._credentials.values() for v in c.values()}
            denied += sandbox.iam.denied
            for role, pairs in sandbox.iam.grants().items():
                granted[role] |= pairs
            for role, pairs in sandbox.iam.used.items():
                used[role] |= pairs
    return Report(outcomes, denied, dict(granted), dict(used), shown, secrets)


def _histories(sandbox: Any) -> str:
    """The history of every execution of the sandbox's state machine (the wave and its child executions)."""
    import boto3

    sfn = boto3.client("stepfunctions", region_name=sandbox.world.region)
    executions = sfn.list_executions(stateMachineArn=sandbox.state_machine_arn)["executions"]
    return json.dumps([sfn.get_execution_history(executionArn=e["executionArn"], maxResults=1000)["events"]
                       for e in executions], default=str)


def explanations(path=EXPLANATIONS) -> dict[tuple[str, str, str], str]:
    """The table of docs/iam.md: `| role | statement | action | why |`, one permission a row."""
    found = {}
    for line in path.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and all(cell.startswith("`") for cell in cells[:3]):
            found[tuple(cell.strip("`") for cell in cells[:3])] = cells[3]
    return found
