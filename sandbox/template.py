"""Reading `template.yaml` the way the sandbox needs it: which handler and which environment
each function has, and what the state machine's definition substitutions resolve to.

The sandbox deploys nothing through CloudFormation; it resolves the few intrinsic functions
the template uses in those places (Ref, GetAtt, Join, Sub, Split) against the values of the
sandbox's own stand-in resources.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
TARGET_TEMPLATE = ROOT / "templates" / "target-account.yaml"


class TemplateError(ValueError):
    """The template uses something the sandbox cannot resolve."""


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that keeps CloudFormation's short-form tags as their long form."""


def _construct(tag: str):
    name = "Ref" if tag == "Ref" else f"Fn::{tag}"

    def construct(loader: yaml.Loader, node: yaml.Node) -> dict:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if tag == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}

    return construct


for _tag in ("Ref", "GetAtt", "Sub", "Join", "Split", "Select", "If", "Equals", "Not", "And", "Or",
             "FindInMap", "GetAZs", "Base64", "Cidr", "ImportValue", "Condition"):
    _CfnLoader.add_constructor(f"!{_tag}", _construct(_tag))


def load(path: Path = TEMPLATE) -> dict:
    return yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


@dataclass(frozen=True)
class Function:
    logical_id: str
    handler: str
    environment: dict[str, Any]


def functions(template: dict) -> dict[str, Function]:
    """Every AWS::Serverless::Function, with the Globals' environment merged under its own."""
    globals_env = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    found = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties", {})
        env = {**globals_env, **props.get("Environment", {}).get("Variables", {})}
        found[logical_id] = Function(logical_id, props["Handler"], env)
    return found


def state_machine(template: dict) -> dict:
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::StateMachine":
            return resource["Properties"]
    raise TemplateError("template.yaml defines no AWS::Serverless::StateMachine")


class Resolver:
    """Resolves intrinsic functions against parameter values and stand-in resource values."""

    def __init__(self, template: dict, parameters: dict[str, Any], refs: dict[str, str], arns: dict[str, str]):
        declared = template.get("Parameters", {})
        self.parameters = {name: spec.get("Default") for name, spec in declared.items()}
        self.list_parameters = {name for name, spec in declared.items() if "List" in str(spec.get("Type", ""))}
        self.parameters.update(parameters)
        self.pseudo = {"AWS::Region": refs.get("AWS::Region", "us-east-1"),
                       "AWS::AccountId": refs.get("AWS::AccountId", "123456789012"),
                       "AWS::Partition": "aws", "AWS::StackName": refs.get("AWS::StackName", "sandbox")}
        self.refs = refs
        self.arns = arns
        self.conditions = template.get("Conditions", {})

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {key: self.resolve(item) for key, item in value.items()}
        (name, argument), = value.items()
        method = {"Ref": self._ref, "Fn::GetAtt": self._get_att, "Fn::Join": self._join,
                  "Fn::Sub": self._sub, "Fn::Split": self._split, "Fn::If": self._if}.get(name)
        if method is None:
            if name.startswith("Fn::") or name == "Ref":
                raise TemplateError(f"the sandbox cannot resolve {name}")
            return {name: self.resolve(argument)}
        return method(argument)

    def _ref(self, name: str) -> Any:
        for table in (self.pseudo, self.parameters, self.refs):
            if name in table:
                value = table[name]
                if isinstance(value, str) and name in self.list_parameters:
                    return [item.strip() for item in value.split(",") if item.strip()]
                return value
        raise TemplateError(f"Ref {name}: no such parameter or stand-in resource")

    def condition(self, name: str) -> bool:
        """A condition of the template's Conditions section, for these parameter values."""
        if name not in self.conditions:
            raise TemplateError(f"Condition {name}: template.yaml has no such condition")
        return self._truth(self.conditions[name])

    def _truth(self, value: Any) -> bool:
        (name, argument), = value.items()
        if name == "Condition":
            return self.condition(argument)
        if name == "Fn::Equals":
            left, right = (self.resolve(item) for item in argument)
            return str(left) == str(right)
        if name == "Fn::Not":
            return not self._truth(argument[0])
        if name == "Fn::And":
            return all(self._truth(item) for item in argument)
        if name == "Fn::Or":
            return any(self._truth(item) for item in argument)
        raise TemplateError(f"the sandbox cannot evaluate {name} in a condition")

    def _if(self, argument: list) -> Any:
        name, when_true, when_false = argument
        return self.resolve(when_true if self.condition(name) else when_false)

    def _get_att(self, argument: list[str]) -> str:
        logical_id, attribute = argument
        if attribute == "Arn" and logical_id in self.arns:
            return self.arns[logical_id]
        raise TemplateError(f"GetAtt {logical_id}.{attribute}: no such stand-in attribute")

    def _join(self, argument: list) -> str:
        separator, items = argument
        items = self.resolve(items)
        return separator.join(str(item) for item in (items if isinstance(items, list) else [items]))

    def _split(self, argument: list) -> list[str]:
        separator, source = argument
        return str(self.resolve(source)).split(separator)

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else (argument[0], argument[1])
        variables = {key: self.resolve(item) for key, item in variables.items()}

        def substitute(match: re.Match) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name:
                return self._get_att(name.split(".", 1))
            value = self._ref(name)
            return ",".join(value) if isinstance(value, list) else str(value)

        return re.sub(r"\$\{([^}!]+)\}", substitute, text)
