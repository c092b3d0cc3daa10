"""The warm pool's claim: one guarded UPDATE decides which claimer gets a slot (real SQLite, and
PostgreSQL under APPLIANCE_TEST_DATABASE=postgresql), so concurrent claims never share one."""

import threading

from appliance.db import database
from appliance.models import Sandbox
from appliance.sandbox.pool import SLOT, SlotShape, take_slot
from netpolicy.allowlist import Policy

SHAPE = SlotShape("minimal", "/images/minimal/v1", 2, 1024, 16)


def make_slot(n: int, **changes) -> Sandbox:
    values = dict(profile=SHAPE.profile, image_dir=SHAPE.image_dir, vcpus=SHAPE.vcpus, memory_mb=SHAPE.memory_mb,
                  disk_gb=SHAPE.disk_gb, state="running", purpose=SLOT, address=f"10.9.0.{n + 2}", tap=f"tp{n}",
                  network_policy=Policy.make("none").to_dict())
    values.update(changes)
    return Sandbox.create(**values)


def test_eight_concurrent_claims_never_share_a_slot(db):
    slots = {make_slot(n).id for n in range(6)}
    got: dict[str, str | None] = {}
    start = threading.Barrier(8)

    def claim(i: int) -> None:
        with database.connection_context():
            start.wait()
            sb = take_slot(SHAPE, f"s-{i}", Policy.make("limited"))
            got[f"s-{i}"] = sb.id if sb else None

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    served = [v for v in got.values() if v]
    assert len(got) == 8
    assert sorted(served) == sorted(slots), "six slots, six claimers served, each slot once"
    assert list(got.values()).count(None) == 2, "the other two get none (they cold-start)"
    for session_id, sandbox_id in got.items():
        if sandbox_id:
            row = Sandbox.get_by_id(sandbox_id)
            assert (row.purpose, row.session_id) == ("session", session_id)
            assert row.network_policy == Policy.make("limited").to_dict(), "the claimer's policy, not the slot's"


def test_a_claim_takes_only_a_slot_of_its_shape_and_host(db):
    make_slot(0, memory_mb=2048)
    make_slot(1, image_dir="/images/minimal/v0")  # an older image version
    make_slot(2, purpose="pool-fill")  # still being made (not yet paused)
    make_slot(3, state="creating")
    make_slot(4, host="other-host")
    assert take_slot(SHAPE, "s-1", Policy.make("none")) is None
    fitting = make_slot(5)
    assert take_slot(SHAPE, "s-1", Policy.make("none")).id == fitting.id
    assert take_slot(SHAPE, "s-2", Policy.make("none")) is None, "a slot serves one session"
    assert take_slot(SHAPE, "s-3", Policy.make("none"), host="other-host").session_id == "s-3"
