"""A Mermaid picture of `statemachine/cutover.asl.json`, made from the definition itself.

`python -m sandbox diagram` rewrites docs/state-machine.md; a test fails when the file no
longer matches the definition, so the picture cannot drift from the state machine.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from sandbox.template import ROOT

DEFINITION = ROOT / "statemachine" / "cutover.asl.json"
PICTURE = ROOT / "docs" / "state-machine.md"

_SHAPES = {"Choice": ("{", "}"), "Wait": ("([", "])"), "Fail": ("[[", "]]"), "Succeed": ("[[", "]]"),
           "Pass": ("[/", "/]"), "Map": ("[[", "]]")}


def render(definition: dict) -> str:
    lines = ["flowchart TD"]
    lines += _graph(definition, "", indent="    ")
    return "\n".join(lines) + "\n"


def _graph(graph: dict, prefix: str, indent: str) -> list[str]:
    lines = [f"{indent}{_id(prefix, graph['StartAt'])}_start((start)) --> {_id(prefix, graph['StartAt'])}"]
    for name, state in graph["States"].items():
        node = _id(prefix, name)
        opening, closing = _SHAPES.get(state["Type"], ("[", "]"))
        lines.append(f'{indent}{node}{opening}"{name}"{closing}')
        lines += [f"{indent}{node} -->{label} {_id(prefix, target)}" for label, target in _edges(state)]
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            lines.append(f'{indent}subgraph {node}_each["each server, in its own child execution"]')
            lines += _graph(processor, f"{node}_", indent + "    ")
            lines.append(f"{indent}end")
            lines.append(f"{indent}{node} -.-> {node}_each")
    return lines


def _edges(state: dict) -> list[tuple[str, str]]:
    edges = []
    if state.get("Next"):
        edges.append(("", state["Next"]))
    for choice in state.get("Choices", []):
        edges.append((f"|{_condition(choice)}|", choice["Next"]))
    if state.get("Default"):
        edges.append(("|otherwise|", state["Default"]))
    for catch in state.get("Catch", []):
        edges.append((f"|{' '.join(catch['ErrorEquals'])}|", catch["Next"]))
    # Several Catch and Choice rules may lead to one state; one arrow per target is enough.
    return list(dict.fromkeys(edges))


def _condition(choice: dict) -> str:
    variable = choice.get("Variable", "").removeprefix("$.")
    for operator, value in choice.items():
        if operator not in ("Variable", "Next"):
            return f"{variable} {operator} {json.dumps(value)}".replace('"', "'")
    return variable


def _id(prefix: str, name: str) -> str:
    return prefix + re.sub(r"\W+", "_", name).strip("_")


def markdown(definition: dict) -> str:
    return (
        "# The state machine\n\n"
        "Made from `statemachine/cutover.asl.json` by `python -m sandbox diagram`; a test checks that it\n"
        "matches the definition.\n\n"
        "```mermaid\n" + render(definition) + "```\n"
    )


def write() -> Path:
    PICTURE.parent.mkdir(exist_ok=True)
    PICTURE.write_text(markdown(json.loads(DEFINITION.read_text())))
    return PICTURE


def is_current() -> bool:
    return PICTURE.exists() and PICTURE.read_text() == markdown(json.loads(DEFINITION.read_text()))
