"""A dialer in a process of its own, for the SIGKILL test.

``python -m tests.campaigns.dialer_process DATA_DIR``

It dials what is due in the store under ``DATA_DIR`` through a carrier that takes calls to
numbers ending in 1 at once and never answers the REST request for any other (so those stay
``placing``), printing ``placed <attempt id> <sid>`` / ``placing <attempt id>`` lines, until it
is killed. Leases are short (2 s) so the test need not wait long.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.campaigns.dialer_fakes import FakeSchedule, make_services
from voicebot.campaigns import dialer as dialer_module
from voicebot.campaigns.dialer import Dialer
from voicebot.telephony.outbound import OutboundCall, PlacedCall


class HangingCarrier:
    """Takes calls to numbers ending in 1; hangs on the others' REST requests."""

    name = "hanging"

    async def place_call(self, call: OutboundCall) -> PlacedCall:
        attempt_id = call.tags["attempt_id"]
        if call.to.endswith("1"):
            sid = "CA" + attempt_id[3:]
            print("placed", attempt_id, sid, flush=True)
            return PlacedCall(call_sid=sid, status="queued")
        print("placing", attempt_id, flush=True)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def hang_up(self, call_sid: str) -> None:
        pass

    async def close(self) -> None:
        pass


async def main(data_dir: Path) -> None:
    dialer_module.PLACING_LEASE_SECS = 2.0
    dialer_module.CLAIM_LEASE_SECS = 2.0
    dialer_module.PLACE_TIMEOUT_SECS = 3600.0
    services = await make_services(data_dir)
    dialer = Dialer(services, HangingCarrier(), schedule=FakeSchedule(), owner="proc_killed")
    dialer.start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
