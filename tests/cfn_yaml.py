"""Reads CloudFormation YAML, short-form tags included, into plain Python data.

`!Ref X` becomes {"Ref": "X"}, `!GetAtt A.B` becomes {"Fn::GetAtt": ["A", "B"]}, and every
other `!Name` becomes {"Fn::Name": ...}, which is the JSON form CloudFormation documents and
what a test (or the sandbox) can walk without knowing YAML tags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

# Short-form tags CloudFormation and SAM accept; `!Ref` and `!Condition` are the two whose
# long form has no "Fn::" prefix.
_FUNCTIONS = (
    "And", "Base64", "Cidr", "Equals", "FindInMap", "ForEach", "GetAZs", "GetAtt", "If",
    "ImportValue", "Join", "Length", "Not", "Or", "Select", "Split", "Sub", "ToJsonString",
    "Transform",
)


class CloudFormationLoader(yaml.SafeLoader):
    """A SafeLoader that also understands CloudFormation's short-form intrinsic functions."""


def _construct(node: yaml.Node, loader: CloudFormationLoader) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


def _function(name: str):
    key = name if name in ("Ref", "Condition") else f"Fn::{name}"

    def construct(loader: CloudFormationLoader, node: yaml.Node) -> dict[str, Any]:
        value = _construct(node, loader)
        if name == "GetAtt" and isinstance(value, str):
            # The short form is "Resource.Attribute"; attributes may contain dots themselves.
            value = value.split(".", 1)
        return {key: value}

    return construct


for _name in (*_FUNCTIONS, "Ref", "Condition"):
    CloudFormationLoader.add_constructor(f"!{_name}", _function(_name))


def loads(text: str) -> Any:
    return yaml.load(text, Loader=CloudFormationLoader)  # noqa: S506 - a SafeLoader subclass


def load(path: str | Path) -> Any:
    return loads(Path(path).read_text(encoding="utf-8"))
