"""What the rehearsal tests read off an inventory, the way an engineer would check an account."""

from __future__ import annotations

import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
MIGRATION_ACCOUNT = "123456789012"


def load_event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def live_instances(inventory: dict, account: str) -> list[dict]:
    return [i for i in inventory["accounts"][account]["instances"] if i["state"] not in ("terminated", "shutting-down")]


def lifecycle_of(inventory: dict) -> dict[str, str]:
    return {server["id"]: server["lifeCycle"] for server in inventory["mgn"]["sourceServers"]}


def random_request(seed: int, servers: int, accounts: tuple[str, str] = ("222222222222", "333333333333")) -> dict:
    """A valid request of `servers` servers spread over two target accounts, varied by `seed`."""
    rng = random.Random(seed)
    entries = []
    for index in range(servers):
        account = accounts[index % 2] if index < 2 else rng.choice(accounts)
        network = 20 if account == accounts[0] else 30
        subnet_index = rng.randint(1, 2)
        target = {
            "accountId": account,
            "subnetId": f"subnet-0{network}{subnet_index:02d}{'a' * 12}"[:24],
            "securityGroupIds": [f"sg-0{network}{rng.randint(1, 3):02d}{'b' * 12}"[:20]],
            "privateIpAddress": f"10.{network}.{subnet_index}.{10 + index}",
            "tags": {"Name": f"server-{seed}-{index}"},
        }
        if rng.random() < 0.6:
            target["instanceType"] = rng.choice(["t3.small", "m5.large", "c5.xlarge"])
        if rng.random() < 0.7:
            target["kmsKeyId"] = "alias/mgn-cutover-target"
        entries.append({"sourceServerId": f"s-{seed:04d}{index:013d}", "target": target})
    return {"wave": f"random-{seed}", "servers": entries, "options": {"pollIntervalSeconds": 30}}
