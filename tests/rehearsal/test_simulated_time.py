"""Rehearsals on the simulated clock: a server takes the time of its AWS operations, and a wave the time of its
longest server."""

from __future__ import annotations

import copy

import pytest

from sandbox.runner import Sandbox
from sandbox.world import DEFAULT_SPEED
from tests.rehearsal.helpers import load_event

WAVE = load_event("console-wave.json")
FIRST, SECOND = (server["sourceServerId"] for server in WAVE["servers"])


def one_server_wave() -> dict:
    request = copy.deepcopy(WAVE)
    request["servers"] = request["servers"][:1]
    return request


def gib_seconds(gib: float, speed: str) -> float:
    return gib * 1024 / DEFAULT_SPEED[speed]


@pytest.fixture(scope="module")
def large_server():
    """One server with a 100 GiB disk, rehearsed once at the default speed."""
    with Sandbox(one_server_wave(), {"servers": {FIRST: {"diskSizesGiB": [100]}}}) as sandbox:
        rehearsal = sandbox.rehearse()
    assert rehearsal.status == "SUCCEEDED", rehearsal.cause
    return rehearsal.timing["servers"][FIRST]


def test_a_100_gib_servers_operations_take_their_durations_in_order(large_server):
    # GIVEN a 100 GiB server rehearsed at the default speed / WHEN its critical path is read
    path = [(op["operation"], op["seconds"], op["fullCopy"]) for op in large_server["criticalPath"]]

    # THEN it lists the AWS operations in the order they ran, each as long as its disks at the world's speed,
    # and marks the snapshot and the two copies under new keys as full copies of the data
    launch = DEFAULT_SPEED["mgnLaunchSeconds"] + gib_seconds(100, "conversionMiBps")
    copy_seconds = round(gib_seconds(100, "copyMiBps"), 1)
    assert path[:4] == [("MGN cutover launch", round(launch, 1), False),
                        ("CreateImage", round(gib_seconds(100, "snapshotMiBps"), 1), True),
                        ("CopyImage", copy_seconds, True), ("CopyImage", copy_seconds, True)]
    names = [name for name, _, _ in path]
    assert names.index("RunInstances (to running)") < names.index("Status checks")
    assert {"SSM command AWS-ConfigureAWSPackage", "SSM command AmazonCloudWatch-ManageAgent"} <= set(names)
    starts = [op["start"] for op in large_server["criticalPath"]]
    assert starts == sorted(starts)


def test_a_100_gib_servers_cutover_takes_its_operations_time_and_at_most_5_percent_more(large_server):
    # GIVEN the operations the 100 GiB server waits for, one after the other, before Finalize Cutover: the
    # launch, the image, the copy under the sharing key, and the restored instance's boot and status checks
    # (it launches from the shared image; the target's own copy runs meanwhile and is waited for later)
    path = {op["operation"]: op["seconds"] for op in reversed(large_server["criticalPath"])}
    waited = sum(path[name] for name in ("MGN cutover launch", "CreateImage", "CopyImage",
                                         "RunInstances (to running)", "Status checks"))

    # WHEN / THEN its cutover (Start Cutover to Finalize Cutover) took at least those, and the pipeline's
    # overhead over the whole run (end-to-end minus operation time) is at most 5% of the cutover time
    cutover = large_server["cutoverSeconds"]
    assert cutover >= waited
    assert large_server["overheadSeconds"] == pytest.approx(
        large_server["endToEndSeconds"] - large_server["operationSeconds"], abs=0.2)
    assert 0 < large_server["overheadSeconds"] <= 0.05 * cutover, large_server


def test_a_wave_of_two_servers_takes_the_longer_ones_time_not_the_sum():
    # GIVEN a wave of a 20 GiB server and a 200 GiB server
    world = {"servers": {FIRST: {"diskSizesGiB": [20]}, SECOND: {"diskSizesGiB": [200]}}}

    # WHEN it is rehearsed
    with Sandbox(WAVE, world) as sandbox:
        rehearsal = sandbox.rehearse()

    # THEN the larger server took longer, both ran at once, and the wave took the larger one's time (plus its
    # own first and last steps), not the sum of the two
    assert rehearsal.status == "SUCCEEDED", rehearsal.cause
    timing = rehearsal.timing
    small, large = (timing["servers"][server]["endToEndSeconds"] for server in (FIRST, SECOND))
    assert large > small + gib_seconds(180, "copyMiBps")
    assert large <= timing["waveSeconds"] <= large + 10
    assert timing["waveSeconds"] < small + large
