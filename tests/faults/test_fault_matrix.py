"""Every AWS operation the pipeline calls x {throttle, 5xx, crash after the side effect}: the run
survives, and leaves exactly what the fault-free run leaves."""

from __future__ import annotations

from sandbox import faults
from tests.faults.helpers import one_server_request


def test_the_fault_matrix_of_a_one_server_wave_survives_with_nothing_duplicated_or_leaked():
    # GIVEN a one-server wave, and the operations and functions its fault-free rehearsal used
    request = one_server_request()

    # WHEN it is rehearsed once per (operation x throttle, 5xx) and per (function x crash-after)
    matrix = faults.run_matrix(request, None, faults.MATRIX_KINDS, jobs=2)

    # THEN the matrix covered every operation and function, each fault was injected, and every run
    # ended SUCCEEDED with an inventory equal to the fault-free one's, ids aside
    rows = {row["fault"]: row for row in matrix["rows"]}
    operations, functions = matrix["baseline"]["operations"], matrix["baseline"]["functions"]
    assert {"ec2:CreateImage", "ec2:CopyImage", "kms:CreateGrant", "mgn:StartCutover", "ssm:SendCommand",
            "ec2:RunInstances", "mgn:FinalizeCutover"} <= set(operations)
    assert len(rows) == 2 * len(operations) + len(functions)
    failed = {fault: row for fault, row in rows.items() if not faults.passed(row)}
    assert failed == {}, faults.render_matrix({"rows": list(failed.values())})
