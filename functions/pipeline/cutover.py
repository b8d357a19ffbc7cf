"""The MGN side of a cutover: start it (or pick up one already launched), watch the launch,
finalize it, and take the server back to READY_FOR_CUTOVER when the pipeline rolls back."""

from __future__ import annotations

from botocore.exceptions import ClientError

from pipeline import aws, ledger, state
from pipeline.errors import CutoverJobActive, CutoverLaunchFailed, ServerNotReady
from pipeline.observability import logger

READY_FOR_CUTOVER = "READY_FOR_CUTOVER"
CUTTING_OVER = "CUTTING_OVER"
CUTOVER = "CUTOVER"


def describe_source_server(source_server_id: str) -> dict:
    items = aws.client("mgn").describe_source_servers(filters={"sourceServerIDs": [source_server_id]})["items"]
    if not items:
        raise ServerNotReady(f"source server {source_server_id} does not exist in MGN in this account and region")
    return items[0]


def lifecycle(server: dict) -> str:
    return server.get("lifeCycle", {}).get("state", "")


def start(current: dict) -> dict:
    """Start the cutover job, or return the job an earlier attempt of this step started."""
    server_id = state.source_server_id(current)
    server = describe_source_server(server_id)
    running_job = _running_cutover_job(server)
    if running_job:
        logger.info("Cutover already started", job_id=running_job)
        return {"jobId": running_job, "alreadyCutOver": False}
    earlier = state.slot(current, "claim").get("artifacts") or {}
    if lifecycle(server) == CUTOVER and earlier.get("finalized") == "true" and earlier.get("restoredInstance"):
        # An earlier execution passed the point of no return; this one resumes after it.
        restored = earlier["restoredInstance"]
        logger.info("Server already cut over; resuming after finalize", restored_instance_id=restored)
        return {"jobId": earlier.get("cutoverJob"), "alreadyCutOver": True, "restoredInstanceId": restored}

    if lifecycle(server) != READY_FOR_CUTOVER:
        raise ServerNotReady(
            f"source server {server_id} is {lifecycle(server) or 'in no lifecycle state'};"
            f" a cutover starts from {READY_FOR_CUTOVER}"
        )
    job = aws.client("mgn").start_cutover(
        sourceServerIDs=[server_id], tags={"mgn-cutover:execution": state.execution(current)[:256]}
    )["job"]
    ledger.record(server_id, state.execution(current), "cutoverJob", job["jobID"])
    logger.info("Cutover started", job_id=job["jobID"])
    return {"jobId": job["jobID"], "alreadyCutOver": False}


def _running_cutover_job(server: dict) -> str | None:
    if lifecycle(server) != CUTTING_OVER:
        return None
    return server.get("lifeCycle", {}).get("lastCutover", {}).get("initiated", {}).get("jobID")


def check_launch(current: dict) -> dict:
    """One check of the cutover launch: ready once MGN reports the cutover instance launched."""
    server_id = state.source_server_id(current)
    job_id = state.slot(current, "cutover")["jobId"]
    jobs = aws.client("mgn").describe_jobs(filters={"jobIDs": [job_id]})["items"]
    if not jobs:
        raise CutoverLaunchFailed(f"MGN job {job_id} does not exist")
    job = jobs[0]
    participant = next((p for p in job.get("participatingServers", []) if p["sourceServerID"] == server_id), None)
    if participant is None:
        raise CutoverLaunchFailed(f"MGN job {job_id} does not launch source server {server_id}")

    launch_status = participant.get("launchStatus", "PENDING")
    if launch_status in ("FAILED", "TERMINATED"):
        raise CutoverLaunchFailed(f"MGN job {job_id} ended with launch status {launch_status}")
    if launch_status == "LAUNCHED" and participant.get("launchedEc2InstanceID"):
        instance_id = participant["launchedEc2InstanceID"]
        ledger.record(server_id, state.execution(current), "cutoverInstance", instance_id)
        logger.info("Cutover instance launched", cutover_instance_id=instance_id)
        return state.poll_result(current, "cutover", True, cutoverInstanceId=instance_id)
    if job.get("status") == "COMPLETED":
        raise CutoverLaunchFailed(f"MGN job {job_id} completed without launching an instance")
    return state.poll_result(current, "cutover", False, launchStatus=launch_status)


def finalize(current: dict) -> dict:
    """Finalize the cutover: the point of no return. A repeat after success is a no-op."""
    server_id = state.source_server_id(current)
    if lifecycle(describe_source_server(server_id)) != CUTOVER:
        aws.client("mgn").finalize_cutover(sourceServerID=server_id)
        logger.info("Cutover finalized")
    ledger.record(server_id, state.execution(current), "finalized", "true")
    return {"finalized": True}


def revert(server_id: str) -> str | None:
    """Take the server back to READY_FOR_CUTOVER; returns what was done, None if nothing."""
    current = lifecycle(describe_source_server(server_id))
    if current in (READY_FOR_CUTOVER, CUTOVER):
        # CUTOVER means finalize already happened: the point of no return is behind us.
        return None
    try:
        aws.client("mgn").change_server_life_cycle_state(
            sourceServerID=server_id, lifeCycle={"state": READY_FOR_CUTOVER}
        )
    except ClientError as err:
        logger.warning("Could not return the server to ready for cutover", error=str(err))
        raise
    return f"lifecycle {current} -> {READY_FOR_CUTOVER}"


def settle_job(job_id: str | None) -> str | None:
    """Before a rollback: the cutover instance a finished launch job launched (None if none).

    MGN keeps a server's lifecycle while its launch job runs, and a job still running may yet
    launch an instance the rollback must terminate, so a running job makes the rollback wait.
    """
    if not job_id:
        return None
    jobs = aws.client("mgn").describe_jobs(filters={"jobIDs": [job_id]})["items"]
    if not jobs:
        return None
    job = jobs[0]
    if job.get("status") != "COMPLETED":
        raise CutoverJobActive(f"MGN job {job_id} is {job.get('status')}; rollback waits until it ends")
    launched = [p.get("launchedEc2InstanceID") for p in job.get("participatingServers", [])]
    return next((instance for instance in launched if instance), None)
