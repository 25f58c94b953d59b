"""The group-commit shipper (``events._shipper.GroupShipper``) over random interleavings of writes,
waits and upload outcomes: a waiter told "durable" has every item written before it asked in
the log at that moment; every item reaches the log once and in write order; once uploads succeed
every waiter is answered. (A fake source; uploads run in worker threads as in production.)"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api_model_management.errors import EventsNotShipped
from api_model_management.events._shipper import GroupShipper

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from _ship_fakes import FakeSource  # noqa: E402

pytestmark = pytest.mark.property

ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(1, 3)),
        st.tuples(st.just("wait"), st.just(0)),
        st.tuples(st.just("end"), st.booleans()),
    ),
    max_size=30,
)


async def settle(source: FakeSource, shipper: GroupShipper) -> None:
    """Until an upload is in progress or no round runs."""
    for _ in range(5000):
        if source.ship_calls > source.finished or shipper._round is None:
            return
        await asyncio.sleep(0.0005)
    raise AssertionError("the shipper neither uploads nor stops")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_group_commit_invariants(script):
    async def scenario():
        source = FakeSource()
        shipper = GroupShipper(source, timeout_s=60)
        written: list[int] = []
        waiters: list[tuple[set[int], asyncio.Task[None]]] = []
        seen_at_wake: dict[int, set[int]] = {}

        async def wait(index: int) -> None:
            await shipper.durable()
            seen_at_wake[index] = set(source.uploaded)

        for op, arg in script:
            if op == "write":
                items = list(range(len(written), len(written) + arg))
                source.write(*items)
                written.extend(items)
            elif op == "wait":
                index = len(waiters)
                waiters.append((set(written), asyncio.create_task(wait(index))))
                await asyncio.sleep(0)
            else:
                await settle(source, shipper)
                if source.ship_calls > source.finished:  # an upload to end
                    source.let(ok=arg)
                    await source.until_finished(source.ship_calls)
            await settle(source, shipper)

        # from now on every upload succeeds (and the round still running when the last waiter
        # is answered is let end too: aclose would otherwise wait for the fake's 30 s timeout)
        while not all(task.done() for _, task in waiters) or shipper._round is not None:
            await settle(source, shipper)
            if source.ship_calls > source.finished:
                source.let(ok=True)
                await source.until_finished(source.ship_calls)
            else:
                await asyncio.sleep(0.001)
        await shipper.aclose()

        flat = [item for upload in source.uploads for item in upload]
        assert len(flat) == len(set(flat))  # nothing uploaded twice
        assert flat == written[:len(flat)]  # in write order, no gap
        for index, (needed, task) in enumerate(waiters):
            if task.exception() is None:
                assert needed <= seen_at_wake[index]  # durable means in the log
            else:
                assert isinstance(task.exception(), EventsNotShipped)
                assert task.exception().cause != "timeout"  # a round answered it, ok or failed
        if waiters and not waiters[-1][1].exception():
            assert waiters[-1][0] <= source.uploaded

    asyncio.run(scenario())
