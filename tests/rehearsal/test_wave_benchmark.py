"""The wave benchmark's figures agree with the rehearsal they are read from."""

from __future__ import annotations

import contextlib
import io
import os
import threading

import boto3
import pytest

from sandbox import wave_benchmark
from sandbox.runner import REGION, Sandbox


def state_entered_events(execution_arn: str) -> int:
    """StateEntered events in an execution's history and in those of its Distributed Map children, as an
    engineer would count them from the console or the CLI."""
    sfn = boto3.client("stepfunctions", region_name=REGION)
    arns = [execution_arn]
    for map_run in sfn.list_map_runs(executionArn=execution_arn)["mapRuns"]:
        pages = sfn.get_paginator("list_executions").paginate(mapRunArn=map_run["mapRunArn"])
        arns += [child["executionArn"] for page in pages for child in page["executions"]]
    entered = 0
    for arn in arns:
        for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
            entered += sum(1 for event in page["events"] if event["type"].endswith("StateEntered"))
    return entered


def test_counted_figures_match_the_rehearsal_of_a_three_server_wave():
    # GIVEN a generated wave of three servers over the three target accounts, on the classic path
    request, world = wave_benchmark.generated_wave(3, "classic")
    assert sorted({s["target"]["accountId"] for s in request["servers"]}) == list(wave_benchmark.TARGET_ACCOUNTS)

    # WHEN it is rehearsed with the benchmark's counters on
    with wave_benchmark.counting() as counters, contextlib.redirect_stdout(io.StringIO()):
        with Sandbox(request, world) as sandbox:
            rehearsal = sandbox.rehearse()
            figures = wave_benchmark.figures(sandbox, rehearsal, counters, 3)
            arn = f"{sandbox.state_machine_arn.replace(':stateMachine:', ':execution:')}:{rehearsal.execution}"
            entered = state_entered_events(arn)

    # THEN every server cut over, and the figures are the rehearsal's own
    assert rehearsal.status == "SUCCEEDED", rehearsal.cause
    assert figures["perServer"]["lambdaInvocations"] == len(sandbox.invocations) / 3
    assert counters.states_entered == entered
    assert figures["totals"]["stateTransitions"] == counters.states_entered + counters.retries
    # Each server's image is made once and copied twice (under the sharing key, then by its target account),
    # each target account assumed into; no Lambda call of the state machine is counted as a handler's.
    by_operation = figures["totals"]["awsCallsByOperation"]
    assert by_operation["ec2:CreateImage"] == 3
    assert by_operation["ec2:CopyImage"] == 6
    assert not any(name.startswith("lambda:") for name in by_operation)
    assert sum(figures["totals"]["awsCallsByService"].values()) == figures["totals"]["awsCalls"]
    assert figures["perServer"]["fullCopiesOnCriticalPath"] == 3


def test_a_one_server_wave_on_every_path_compares_the_full_copies_before_finalize():
    # GIVEN one server, measured on the direct path, the direct path with a re-encrypting copy, and the classic
    # path, in the same run
    benchmark = wave_benchmark.run([1], ["direct", "reencrypt", "classic"], in_process=True)

    # THEN all cut over; before finalize the direct path waited for one full copy (the image), the direct path
    # with volumes under the default EBS key for two, the classic path for three
    direct, reencrypt, classic = benchmark["results"]
    assert [result["status"] for result in benchmark["results"]] == ["SUCCEEDED"] * 3
    assert direct["perServer"]["fullCopiesOnCriticalPath"] == 1
    assert reencrypt["perServer"]["fullCopiesOnCriticalPath"] == 2
    assert classic["perServer"]["fullCopiesOnCriticalPath"] == 3
    assert benchmark["ratios"]["1"]["fullCopiesOnCriticalPath"] == 3
    # and the downtime it saves is real: the classic path's is longer
    assert benchmark["ratios"]["1"]["downtimeSeconds"] > 1
    # and the table shows every figure, none of them unavailable
    assert wave_benchmark.UNAVAILABLE not in wave_benchmark.render(benchmark)


def test_growth_compares_each_wave_per_server_with_the_smallest():
    # GIVEN waves of one and four servers on the direct path, measured in the same run
    benchmark = wave_benchmark.run([1, 4], ["direct"], in_process=True)
    one, four = benchmark["results"]

    # THEN the growth of each per-server figure is the larger wave's over the smaller's
    grown = benchmark["growth"]["direct"]
    assert grown["1"]["stateTransitions"] == 1
    for name in ("stateTransitions", "awsCalls", "lambdaInvocations", "wallSeconds"):
        assert grown["4"][name] == four["perServer"][name] / one["perServer"][name]
    # AND a server costs the same transitions and calls in either wave, within 10%
    assert 0.9 <= grown["4"]["stateTransitions"] <= 1.1
    assert 0.9 <= grown["4"]["awsCalls"] <= 1.1
    # AND the table shows it
    assert "smallest wave" in wave_benchmark.render(benchmark)


def memory_mappings() -> int:
    with open("/proc/self/maps") as maps:
        return sum(1 for _ in maps)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="counts the process's memory mappings on Linux")
def test_a_rehearsal_lets_go_of_the_threads_it_started():
    # GIVEN a sandbox for a three-server wave, its world built
    request, world = wave_benchmark.generated_wave(3, "direct")
    with contextlib.redirect_stdout(io.StringIO()), Sandbox(request, world) as sandbox:
        mappings, threads = memory_mappings(), threading.active_count()

        # WHEN the wave is rehearsed (the interpreter starts a thread per iteration, program and Task)
        rehearsal = sandbox.rehearse()

        # THEN its threads are gone and their stacks unmapped: a thread kept after it ended keeps its stack
        # on Python 3.13, some 260 mappings a server, and a 500-server wave ran out of mappings that way
        assert rehearsal.status == "SUCCEEDED", rehearsal.cause
        assert threading.active_count() == threads
        assert memory_mappings() - mappings < 250
