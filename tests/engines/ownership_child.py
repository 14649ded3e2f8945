"""A process resuming one persisted flow: ``python ownership_child.py CONF FLOW JOURNAL [LEASE]``.

Its tasks append ``<pid> <task>`` to the journal file (one line per execution), sleeping a
little each, so that several processes started together overlap. Exit code 0: the flow ran
to SUCCESS here; 3: another engine owned the flow (FlowOwned); 4: ownership was lost midway
(OwnershipLost).
"""

from __future__ import annotations

import json
import os
import sys
import time

from taskflow import engines, exceptions, task
from taskflow.patterns import linear_flow as lf
from taskflow.persistence import backends

TASKS = 8
STEP = float(os.environ.get("OWNERSHIP_STEP", "0.05"))


#: A file the tasks wait for before running (if set): the test creates it once the other
#: process has been refused, so the winner can not finish before the loser even tried.
GATE = os.environ.get("OWNERSHIP_GATE")


class Logged(task.Task):
    def execute(self, journal: str) -> None:
        if GATE:
            deadline = time.monotonic() + 60
            while not os.path.exists(GATE) and time.monotonic() < deadline:
                time.sleep(0.01)
        time.sleep(STEP)
        with open(journal, "a") as out:
            out.write(f"{os.getpid()} {self.name}\n")


def make_flow() -> lf.Flow:
    return lf.Flow("owned").add(*[Logged(f"t{i}") for i in range(TASKS)])


def main() -> int:
    conf, flow_uuid, journal = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    lease = float(sys.argv[4]) if len(sys.argv) > 4 else 30.0
    with backends.backend(conf) as backend:
        with backend.get_connection() as conn:
            detail = conn.get_flow_details(flow_uuid)
        print("ready", flush=True)
        try:
            engine = engines.load(
                make_flow(),
                flow_detail=detail,
                backend=backend,
                store={"journal": journal},
                ownership_lease=lease,
            )
            engine.run()
        except exceptions.FlowOwned as err:
            print(f"owned: {err}", flush=True)
            return 3
        except exceptions.OwnershipLost as err:
            print(f"lost: {err}", flush=True)
            return 4
    return 0


if __name__ == "__main__":
    sys.exit(main())
