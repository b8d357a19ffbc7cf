"""Removing what a cutover created: after success (clean up) and before finalize (roll back).

Both read the ledger rather than the state alone, so what an earlier, failed attempt created
is found too. Each removal is idempotent, and each one is tried even when another fails, so a
single stubborn resource does not keep the rest from being removed.
"""

from __future__ import annotations

from typing import Callable

from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

from pipeline import aws, cutover, images, ledger, names, restore, state
from pipeline.errors import ServerNotReady, TransientAwsError
from pipeline.observability import is_transient, logger


def clean_up(current: dict) -> dict:
    """After a verified restore: unshare and remove the migration account's intermediates."""
    server_id = state.source_server_id(current)
    artifacts = ledger.read(server_id)["artifacts"]
    removed, failures = [], []
    # Sharing is always taken back; with `cleanup` off the images and the cutover instance
    # stay in the migration account for whoever wants to inspect them. The state machine comes here only
    # once the target's own copy ended (available, or failed and reported as a follow-up).
    # NOTE: a target copy that failed or timed out after finalize stays in the target account, for the
    # follow-up to remove: this function has no role in the target accounts, and needs none otherwise.
    tasks = _unshare_tasks(artifacts, server_id)
    if state.option(current, "cleanup"):
        tasks += _migration_image_tasks(artifacts)
        if artifacts.get("cutoverInstance"):
            tasks.append(("cutover instance", lambda: _terminate_cutover_instance(artifacts["cutoverInstance"])))
    done = _run(tasks, removed, failures)
    ledger.forget(server_id, state.execution(current), *_forgettable(artifacts, done))
    _raise_if_transient(failures)
    logger.info("Intermediates removed", removed=removed, failures=failures)
    return {"removed": removed, "failures": failures, "ready": not failures}


def roll_back(current: dict) -> dict:
    """Before finalize: remove everything the cutover created, in both accounts, and take the
    MGN server back to READY_FOR_CUTOVER."""
    server_id = state.source_server_id(current)
    artifacts = ledger.read(server_id)["artifacts"]
    account = state.target_account(current)
    removed, failures = [], []
    tasks = []
    # What a finalized cutover restored is the server now (an earlier execution's, when this
    # one was started again by mistake): rollback never touches it.
    # MGN is asked too: finalize may have happened with the ledger write after it lost.
    finalized = artifacts.get("finalized") == "true" or _mgn_says_cut_over(server_id)
    if artifacts.get("restoredInstance") and not finalized:
        tasks.append(("restored instance", lambda: restore.terminate(account, artifacts["restoredInstance"])))
    if artifacts.get("targetImage") and not finalized:
        # Restoring from the shared image, the target's copy is usually still pending here: deregistering a
        # pending copy is how EC2 stops it, so it goes the same way as a finished one.
        # NOTE: EC2 does not document whether DeleteAssociatedSnapshots removes the snapshots of a copy it
        # stops; the sandbox removes them. One left behind carries the managed tag and the image id in its
        # description.
        tasks.append(("target image",
                      lambda: images.remove(aws.target_client("ec2", account), artifacts["targetImage"])))
    tasks += _unshare_tasks(artifacts, server_id) + _migration_image_tasks(artifacts)
    if not finalized:
        # A launch job still running is waited for (the Roll Back state retries CutoverJobActive);
        # one that launched an instance the pipeline never saw gets it terminated too.
        launched = cutover.settle_job(artifacts.get("cutoverJob") or state.slot(current, "cutover").get("jobId"))
        if launched and not artifacts.get("cutoverInstance"):
            artifacts["cutoverInstance"] = launched
    if artifacts.get("cutoverInstance"):
        tasks.append(("cutover instance", lambda: _terminate_cutover_instance(artifacts["cutoverInstance"])))
    if not finalized:
        tasks.append(("lifecycle", lambda: [step for step in [cutover.revert(server_id)] if step]))
    done = _run(tasks, removed, failures)
    ledger.forget(server_id, state.execution(current), *_forgettable(artifacts, done))
    _raise_if_transient(failures)
    logger.info("Rolled back", removed=removed, failures=failures)
    return {"removed": removed, "failures": failures, "complete": not failures}


def _mgn_says_cut_over(server_id: str) -> bool:
    try:
        return cutover.lifecycle(cutover.describe_source_server(server_id)) == cutover.CUTOVER
    except ServerNotReady:
        return False


def _unshare_tasks(artifacts: dict, server_id: str) -> list[tuple[str, Callable[[], list[str]]]]:
    tasks = []
    if artifacts.get("grant"):
        name = names.grant_name(server_id, artifacts["sharedWith"]) if artifacts.get("sharedWith") else None
        tasks.append(("grant", lambda: images.revoke_grant(artifacts["grant"], name)))
    if artifacts.get("sharedWith") and artifacts.get("sharedImage"):
        tasks.append(("sharing", lambda: images.unshare(artifacts["sharedImage"], artifacts["sharedWith"])))
    return tasks


def _migration_image_tasks(artifacts: dict) -> list[tuple[str, Callable[[], list[str]]]]:
    ec2 = aws.client("ec2")
    tasks = []
    # The sharing copy may be the cutover image itself (no copy was needed): remove it once.
    for name in dict.fromkeys(key for key in ("sharedImage", "image") if artifacts.get(key)):
        if name == "image" and artifacts.get("sharedImage") == artifacts.get("image"):
            continue
        tasks.append((name, lambda image_id=artifacts[name]: images.remove(ec2, image_id)))
    return tasks


def _terminate_cutover_instance(instance_id: str) -> list[str]:
    ec2 = aws.client("ec2")
    try:
        instances = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    except ClientError as err:
        # EC2 forgets a terminated instance after a while: gone is what we want.
        if err.response["Error"]["Code"] != "InvalidInstanceID.NotFound":
            raise
        return []
    if not instances or instances[0]["Instances"][0]["State"]["Name"] in ("shutting-down", "terminated"):
        return []
    ec2.terminate_instances(InstanceIds=[instance_id])
    return [f"cutover instance {instance_id}"]


def _run(tasks: list, removed: list[str], failures: list[dict]) -> set[str]:
    """Run every removal; return the names of those that succeeded."""
    done = set()
    for name, task in tasks:
        try:
            removed.extend(task())
            done.add(name)
        except Exception as err:  # noqa: BLE001 - one failure must not stop the other removals
            logger.exception("Removal failed", artifact=name)
            failures.append({"artifact": name, "error": f"{type(err).__name__}: {err}", "transient": _transient(err)})
    return done


def _transient(err: Exception) -> bool:
    if isinstance(err, ClientError):
        return is_transient(err)
    return isinstance(err, (ConnectionError, HTTPClientError, TransientAwsError))


def _raise_if_transient(failures: list[dict]) -> None:
    """A removal that failed for a transient reason is retried by the state machine, with the whole
    step: what did get removed is already out of the ledger, so the retry does only the rest."""
    transient = [failure for failure in failures if failure.get("transient")]
    if transient:
        raise TransientAwsError("; ".join(f"{failure['artifact']}: {failure['error']}" for failure in transient))
    for failure in failures:
        failure.pop("transient", None)


# Which ledger entries a task name clears once the task succeeded.
_LEDGER_ENTRIES = {
    "grant": ("grant",),
    "sharing": ("sharedWith",),
    "sharedImage": ("sharedImage",),
    "image": ("image",),
    "target image": ("targetImage",),
    "restored instance": ("restoredInstance",),
    "cutover instance": ("cutoverInstance",),
    "lifecycle": ("cutoverJob",),
}


def _forgettable(artifacts: dict, done: set[str]) -> list[str]:
    entries = [entry for task in done for entry in _LEDGER_ENTRIES.get(task, ())]
    if "sharedImage" in done and artifacts.get("sharedImage") == artifacts.get("image"):
        entries.append("image")
    return [entry for entry in dict.fromkeys(entries) if entry in artifacts]
