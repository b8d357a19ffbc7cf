"""Structure of statemachine/cutover.asl.json that neither cfn-lint nor `sam validate` checks.

The definition holds nested graphs (the Distributed Map's per-server ItemProcessor, any
Parallel branches); every check below runs on each graph on its own, since a Next can only
name a state of its own graph. The definition file missing is a failure, not a skip.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.cfn_yaml import load

ROOT = Path(__file__).resolve().parent.parent
DEFINITION = ROOT / "statemachine" / "cutover.asl.json"
TEMPLATE = ROOT / "template.yaml"
FUNCTIONS_DIR = ROOT / "functions"

# Tasks allowed to have no Catch, because an error there is meant to fail the execution:
# the request is validated before anything changes, so there is nothing to roll back.
TASKS_WITHOUT_CATCH = {"Normalize Request"}

# Every Lambda task retries these (Lambda's own transient failures) besides its app retriers.
LAMBDA_TRANSIENT_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}

# No retrier may back off for longer than this in total: a stuck step should fail into its
# Catch within the downtime window, not hours later. Polling uses Wait loops instead.
MAX_RETRY_SECONDS = 3600

LAMBDA_INVOKE = re.compile(r"^arn:aws[a-z-]*:states:::lambda:invoke(\.waitForTaskToken)?$")
SUBSTITUTION = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    if not DEFINITION.is_file():
        pytest.fail(f"{DEFINITION.relative_to(ROOT)} does not exist")
    return json.loads(DEFINITION.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load(TEMPLATE)


@pytest.fixture(scope="module")
def substitutions(template) -> dict[str, Any]:
    return template["Resources"]["CutoverStateMachine"]["Properties"]["DefinitionSubstitutions"]


def _graphs(graph: dict[str, Any], path: str = "<top>") -> Iterator[tuple[str, dict[str, Any]]]:
    """The graph and every graph nested in it, each with a readable path."""
    yield path, graph
    for name, state in graph["States"].items():
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                yield from _graphs(state[key], f"{path} > {name}")
        for index, branch in enumerate(state.get("Branches", [])):
            yield from _graphs(branch, f"{path} > {name}[{index}]")


def _states(definition: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, graph in _graphs(definition):
        for name, state in graph["States"].items():
            yield path, name, state


def _targets(state: dict[str, Any]) -> list[str]:
    """The states this one can move to within its own graph."""
    targets = [state["Next"]] if "Next" in state else []
    targets += [choice["Next"] for choice in state.get("Choices", [])]
    targets += [state["Default"]] if "Default" in state else []
    targets += [catcher["Next"] for catcher in state.get("Catch", [])]
    return targets


def _tasks(definition) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, name, state) for path, name, state in _states(definition) if state["Type"] == "Task"]


def _function_substitution(state: dict[str, Any]) -> str | None:
    """The ${...} naming the function a Lambda task invokes, in either of the two task forms."""
    resource = state["Resource"]
    if LAMBDA_INVOKE.match(resource):
        resource = state.get("Parameters", {}).get("FunctionName", "")
    match = SUBSTITUTION.fullmatch(resource)
    return match.group(1) if match else None


# --- the graph --------------------------------------------------------------------------------


def test_definition_exists():
    assert DEFINITION.is_file(), f"{DEFINITION.relative_to(ROOT)} does not exist"


def test_every_transition_names_a_state_of_its_own_graph(definition):
    missing = [
        f"{path} > {name} -> {target}"
        for path, graph in _graphs(definition)
        for name, state in graph["States"].items()
        for target in _targets(state)
        if target not in graph["States"]
    ]
    starts = [path for path, graph in _graphs(definition) if graph["StartAt"] not in graph["States"]]

    assert missing == []
    assert starts == []


def test_every_state_is_reachable_from_start(definition):
    unreachable = []
    for path, graph in _graphs(definition):
        seen, todo = set(), [graph["StartAt"]]
        while todo:
            name = todo.pop()
            if name in seen or name not in graph["States"]:
                continue
            seen.add(name)
            todo.extend(_targets(graph["States"][name]))
        unreachable += [f"{path} > {name}" for name in graph["States"] if name not in seen]

    assert unreachable == []


def test_every_state_either_moves_on_or_ends(definition):
    # Choice moves through its rules, Succeed and Fail end by their type; anything else needs one of the two.
    dangling = [
        f"{path} > {name}"
        for path, name, state in _states(definition)
        if state["Type"] not in ("Choice", "Succeed", "Fail") and ("Next" in state) == bool(state.get("End"))
    ]
    assert dangling == []


def test_every_loop_has_a_way_out(definition):
    # GIVEN each graph's cycles (strongly connected parts of more than one state, or a self-loop)
    trapped = []
    for path, graph in _graphs(definition):
        for component in _cycles(graph["States"]):
            # THEN one of its Choice states can leave it (a bound: attempts run out, or the thing is ready)
            exits = [
                name
                for name in component
                if graph["States"][name]["Type"] == "Choice"
                and any(target not in component for target in _targets(graph["States"][name]))
            ]
            if not exits:
                trapped.append(f"{path}: {sorted(component)}")

    assert trapped == []


def _cycles(states: dict[str, dict[str, Any]]) -> list[set[str]]:
    """Strongly connected components that form a loop (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        on_stack.add(name)
        for target in _targets(states[name]):
            if target not in states:
                continue
            if target not in index:
                visit(target)
                low[name] = min(low[name], low[target])
            elif target in on_stack:
                low[name] = min(low[name], index[target])
        if low[name] == index[name]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == name:
                    break
            if len(component) > 1 or name in _targets(states[name]):
                found.append(component)

    for name in states:
        if name not in index:
            visit(name)
    return found


# --- states by type ---------------------------------------------------------------------------


def test_every_choice_has_a_default(definition):
    offenders = [
        f"{path} > {name}"
        for path, name, state in _states(definition)
        if state["Type"] == "Choice" and not state.get("Default")
    ]
    assert offenders == []


def test_every_fail_says_what_and_why(definition):
    offenders = [
        f"{path} > {name}"
        for path, name, state in _states(definition)
        if state["Type"] == "Fail"
        and not (("Error" in state or "ErrorPath" in state) and ("Cause" in state or "CausePath" in state))
    ]
    assert offenders == []


def test_every_wait_takes_its_interval_from_input(definition):
    # A rehearsal runs the same definition with zero-second waits.
    offenders = [
        f"{path} > {name}"
        for path, name, state in _states(definition)
        if state["Type"] == "Wait"
        and ("SecondsPath" not in state or set(state) & {"Seconds", "Timestamp", "TimestampPath"})
    ]
    assert offenders == []


def test_every_task_retries(definition):
    offenders = [f"{path} > {name}" for path, name, state in _tasks(definition) if not state.get("Retry")]
    assert offenders == []


def test_every_task_retries_lambda_transient_errors(definition):
    offenders = [
        f"{path} > {name}"
        for path, name, state in _tasks(definition)
        if not LAMBDA_TRANSIENT_ERRORS <= {error for retrier in state.get("Retry", []) for error in retrier["ErrorEquals"]}
    ]
    assert offenders == []


def test_every_task_catches_except_the_documented_ones(definition):
    without_catch = {name for _, name, state in _tasks(definition) if not state.get("Catch")}

    assert without_catch == TASKS_WITHOUT_CATCH


def test_catch_all_comes_last_and_alone(definition):
    # Step Functions rejects States.ALL anywhere but alone in the last retrier or catcher.
    offenders = []
    for path, name, state in _states(definition):
        for field in ("Retry", "Catch"):
            rules = state.get(field, [])
            for position, rule in enumerate(rules):
                if "States.ALL" in rule["ErrorEquals"] and (len(rule["ErrorEquals"]) > 1 or position != len(rules) - 1):
                    offenders.append(f"{path} > {name} {field}[{position}]")
    assert offenders == []


def _worst_case_seconds(retrier: dict[str, Any]) -> float:
    interval = retrier.get("IntervalSeconds", 1)
    rate = retrier.get("BackoffRate", 2.0)
    cap = retrier.get("MaxDelaySeconds", float("inf"))
    return sum(min(interval * rate**attempt, cap) for attempt in range(retrier.get("MaxAttempts", 3)))


def test_no_retrier_backs_off_for_hours(definition):
    offenders = [
        f"{path} > {name} {retrier['ErrorEquals']}: {_worst_case_seconds(retrier):.0f}s"
        for path, name, state in _states(definition)
        for retrier in state.get("Retry", [])
        if _worst_case_seconds(retrier) > MAX_RETRY_SECONDS
    ]
    assert offenders == []


def test_servers_run_as_child_executions(definition):
    # One Standard child execution per server keeps a large wave under the history limit.
    maps = [state for _, _, state in _states(definition) if state["Type"] == "Map"]
    distributed = [
        state
        for state in maps
        if state.get("ItemProcessor", {}).get("ProcessorConfig", {}).get("Mode") == "DISTRIBUTED"
    ]

    assert len(distributed) >= 1
    assert all(state["ItemProcessor"]["ProcessorConfig"].get("ExecutionType") == "STANDARD" for state in distributed)


# --- the template's side ----------------------------------------------------------------------


def test_every_task_invokes_a_substituted_function(definition):
    offenders = [f"{path} > {name}" for path, name, state in _tasks(definition) if _function_substitution(state) is None]
    assert offenders == []


def test_substitutions_match_the_template_both_ways(definition, substitutions):
    used = set(SUBSTITUTION.findall(DEFINITION.read_text(encoding="utf-8")))

    assert sorted(used - set(substitutions)) == [], "used in the definition, missing from DefinitionSubstitutions"
    assert sorted(set(substitutions) - used) == [], "in DefinitionSubstitutions, never used by the definition"


def test_substituted_functions_exist_with_their_handler_modules(substitutions, template):
    # GIVEN each substitution that names a function by its ARN
    missing = []
    for key, value in substitutions.items():
        logical_id = value["Fn::GetAtt"][0]
        resource = template["Resources"].get(logical_id)
        if resource is None or resource["Type"] != "AWS::Serverless::Function":
            missing.append(f"{key}: no function {logical_id}")
            continue

        # THEN the function's handler module exists under functions/ and defines the handler
        module, _, attribute = resource["Properties"]["Handler"].rpartition(".")
        source = FUNCTIONS_DIR / Path(*module.split(".")).with_suffix(".py")
        if not source.is_file():
            missing.append(f"{key}: {source.relative_to(ROOT)} does not exist")
        elif attribute not in _top_level_names(source):
            missing.append(f"{key}: {source.relative_to(ROOT)} defines no {attribute}")

    assert missing == []


def _top_level_names(source: Path) -> set[str]:
    names = set()
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, (ast.ImportFrom, ast.Import)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names
