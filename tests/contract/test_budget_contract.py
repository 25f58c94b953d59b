"""The BudgetPort contract: what budget admission promises the request path, whichever
implementation serves it, with strict enforcement.

Every port, alone or as one of two holders of one CostLedger:

- never lets a limit be passed: at the ledger, settled + reserved stays within every applicable
  limit as long as actual costs do not exceed what was reserved;
- refuses a worst case that does not fit with ``BudgetExceeded`` (holding nothing for it), which
  names the limit that refused (its ``scope`` and ``scope_key``);
- ``release``: the amount is free again, for every holder once the port has flushed;
- ``settle``: the actual cost is the spend the ledger sees once the port has flushed (even above
  the reservation: the money was spent);
- a key no limit applies to is admitted whatever the amount, with nothing held at the ledger;
- a per-key limit (``{"scope": "agent_type", "key": "*"}``) limits each agent type separately.

"Flushed" is ``SliceBudget.flush(everything=True)`` (slices go back to the ledger); a
``LocalBudget`` works on the ledger directly and has nothing to flush.

One abstract suite (:class:`BudgetContract`), one subclass per implementation: ``LocalBudget`` and
``SliceBudget`` over an in-process ledger core (unit, on a ManualClock), and ``SliceBudget`` over
the CostLedger actor (integration, real Ray; the ledger is read through ``__ray_call__``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal

import pytest

from api_model_management._clock import SYSTEM_CLOCK, Clock, ManualClock
from api_model_management.budget import (
    BudgetPort,
    CostLedgerCore,
    LocalBudget,
    LocalSliceGranter,
    SliceBudget,
    SliceGranter,
    SpendKey,
)
from api_model_management.config import BudgetSettings
from api_model_management.errors import BudgetExceeded

from _contract import config_in, ray_actors, run

D = Decimal
RESEARCH = SpendKey("openai", "gpt-4.1-mini", "research")
CODER = SpendKey("openai", "gpt-4.1-mini", "coder")
UNLIMITED = SpendKey("openai", "gpt-4.1-mini", "default")


def research_limit(limit_usd: str) -> list[dict[str, str]]:
    return [{"scope": "agent_type", "key": "research", "window": "day", "limit_usd": limit_usd}]


@dataclass
class Ledger:
    """Budget ports of two routers sharing one CostLedger, and what the ledger holds."""

    ports: list[BudgetPort]
    flush: Callable[[], Awaitable[None]]  # every port hands back what it holds
    spent: Callable[[SpendKey], Decimal]  # settled spend of the key's agent type today
    reserved: Callable[[], Decimal]  # everything held (reservations and slices)


Make = Callable[[list[dict[str, str]]], Ledger]  # make(limits)


class BudgetContract:
    """What every BudgetPort does; a subclass supplies the ``make`` fixture."""

    @pytest.fixture
    def make(self) -> Make:
        raise NotImplementedError

    def test_a_strict_limit_is_never_passed(self, make: Make) -> None:
        limit, worst, actual = D("1.00"), D("0.03"), D("0.025")
        ledger = make(research_limit(str(limit)))

        async def scenario() -> int:
            refused = [False] * len(ledger.ports)
            calls = 0
            for i in range(200):
                who = i % len(ledger.ports)
                if refused[who]:
                    continue
                try:
                    ticket = await ledger.ports[who].reserve(RESEARCH, worst, f"r{i}")
                except BudgetExceeded:
                    refused[who] = True
                    if all(refused):
                        break
                    continue
                assert ledger.spent(RESEARCH) + ledger.reserved() <= limit
                ledger.ports[who].settle(ticket, actual)
                assert ledger.spent(RESEARCH) + ledger.reserved() <= limit
                calls += 1
            assert all(refused), "never refused"
            await ledger.flush()
            return calls

        calls = run(scenario())
        assert ledger.spent(RESEARCH) == actual * calls  # exact: nothing lost, nothing twice
        assert ledger.spent(RESEARCH) <= limit and ledger.reserved() == 0
        assert limit - ledger.spent(RESEARCH) < worst  # refused only once the worst case no longer fit

    def test_a_refusal_raises_budget_exceeded_and_holds_nothing(self, make: Make) -> None:
        ledger = make(research_limit("0.10"))
        port = ledger.ports[0]

        async def scenario() -> None:
            with pytest.raises(BudgetExceeded) as refusal:
                await port.reserve(RESEARCH, D("0.20"), "r1")
            assert refusal.value.requested_usd == D("0.20")
            await ledger.flush()
            assert ledger.reserved() == 0
            port.settle(await port.reserve(RESEARCH, D("0.05"), "r2"), D("0.05"))  # a fit still fits
            await ledger.flush()

        run(scenario())
        assert ledger.spent(RESEARCH) == D("0.05")

    def test_a_refusal_names_the_limit_that_refused_it(self, make: Make) -> None:
        ledger = make([{"scope": "global", "key": "*", "window": "day", "limit_usd": "0.10"}])

        async def scenario() -> BudgetExceeded:
            with pytest.raises(BudgetExceeded) as refusal:
                await ledger.ports[0].reserve(RESEARCH, D("0.20"), "r1")
            await ledger.flush()
            return refusal.value

        refusal = run(scenario())
        assert (getattr(refusal, "scope", None), getattr(refusal, "scope_key", None)) == ("global", "*")

    def test_a_released_reservation_frees_its_amount(self, make: Make) -> None:
        ledger = make(research_limit("0.10"))
        mine, theirs = ledger.ports

        async def scenario() -> None:
            for i in range(3):  # 3 x 0.08 > 0.10: each release frees the amount again
                mine.release(await mine.reserve(RESEARCH, D("0.08"), f"m{i}"))
            await ledger.flush()
            assert ledger.reserved() == 0
            theirs.release(await theirs.reserve(RESEARCH, D("0.08"), "t1"))  # free for all
            await ledger.flush()

        run(scenario())
        assert ledger.reserved() == 0 and ledger.spent(RESEARCH) == 0

    def test_settled_spend_is_what_the_ledger_sees_after_a_flush(self, make: Make) -> None:
        ledger = make(research_limit("1.00"))
        port = ledger.ports[0]

        async def scenario() -> None:
            port.settle(await port.reserve(RESEARCH, D("0.05"), "r1"), D("0.04"))
            port.settle(await port.reserve(RESEARCH, D("0.05"), "r2"), D("0.06"))  # above: the truth
            await ledger.flush()

        run(scenario())
        assert ledger.spent(RESEARCH) == D("0.10") and ledger.reserved() == 0

    def test_a_key_no_limit_applies_to_is_admitted_whatever_the_amount(self, make: Make) -> None:
        ledger = make(research_limit("0.10"))
        port = ledger.ports[0]

        async def scenario() -> None:
            ticket = await port.reserve(UNLIMITED, D("1000"), "r1")
            port.settle(ticket, D("12.5"))
            await ledger.flush()

        run(scenario())
        assert ledger.spent(UNLIMITED) == D("12.5")
        assert ledger.spent(RESEARCH) == 0 and ledger.reserved() == 0

    def test_a_key_no_limit_applies_to_holds_nothing_at_the_ledger(self, make: Make) -> None:
        ledger = make(research_limit("0.10"))
        port = ledger.ports[0]

        async def scenario() -> Decimal:
            ticket = await port.reserve(UNLIMITED, D("1000"), "r1")
            held = ledger.reserved()  # while the call is in flight
            port.release(ticket)
            await ledger.flush()
            return held

        assert run(scenario()) == 0

    def test_a_per_key_limit_limits_each_agent_type_separately(self, make: Make) -> None:
        ledger = make([{"scope": "agent_type", "key": "*", "window": "day", "limit_usd": "0.10"}])
        port = ledger.ports[0]

        async def scenario() -> None:
            for key in (RESEARCH, CODER):
                port.settle(await port.reserve(key, D("0.08"), f"{key.agent_type}-1"), D("0.08"))
                with pytest.raises(BudgetExceeded):
                    await port.reserve(key, D("0.08"), f"{key.agent_type}-2")
            await ledger.flush()

        run(scenario())
        assert ledger.spent(RESEARCH) == D("0.08") and ledger.spent(CODER) == D("0.08")
        assert ledger.reserved() == 0


# ---------------------------------------------------------------------------------------------
# the implementations


def settings_with(limits: list[dict[str, str]]) -> BudgetSettings:
    return BudgetSettings.model_validate({"enforcement": "strict", "limits": limits})


def spent_today(core: CostLedgerCore, key: SpendKey) -> Decimal:
    assert key.agent_type is not None
    return core.spend("agent_type", key.agent_type, "day")


def slices(granter: SliceGranter, settings: BudgetSettings, clock: Clock = SYSTEM_CLOCK) -> list[SliceBudget]:
    return [SliceBudget(granter, settings, f"router-{i}", clock=clock) for i in range(2)]


async def flush_all(ports: list[SliceBudget]) -> None:
    for port in ports:
        await port.flush(everything=True)


async def nothing_to_flush() -> None:
    return None


@pytest.mark.unit
class TestLocalBudget(BudgetContract):
    @pytest.fixture
    def make(self) -> Make:
        def make(limits: list[dict[str, str]]) -> Ledger:
            core = CostLedgerCore(settings_with(limits), clock=ManualClock())
            return Ledger([LocalBudget(core), LocalBudget(core)], nothing_to_flush,
                          lambda key: spent_today(core, key), core.reserved_usd)

        return make



@pytest.mark.unit
class TestSliceBudgetLocal(BudgetContract):
    @pytest.fixture
    def make(self) -> Make:
        def make(limits: list[dict[str, str]]) -> Ledger:
            clock = ManualClock()
            settings = settings_with(limits)
            core = CostLedgerCore(settings, clock=clock)
            ports = slices(LocalSliceGranter(core), settings, clock)
            return Ledger(list(ports), lambda: flush_all(ports),
                          lambda key: spent_today(core, key), core.reserved_usd)

        return make


@pytest.mark.integration
class TestSliceBudgetRay(BudgetContract):
    """The Ray ledger learns settled spend from the event log; with no log here, what routers
    report is held as pending charges, so "spent" is settled plus pending, and "reserved" the
    holds of calls not yet settled."""

    def test_a_key_no_limit_applies_to_is_admitted_whatever_the_amount(self, make: Make) -> None:
        """Admitted and held nowhere; its spend reaches the ledger through the log only (a router
        does not report it), so with no log here the ledger counts nothing for it."""
        ledger = make(research_limit("0.10"))
        port = ledger.ports[0]

        async def scenario() -> None:
            ticket = await port.reserve(UNLIMITED, D("1000"), "r1")
            assert ticket.token is None
            port.settle(ticket, D("12.5"))
            await ledger.flush()

        run(scenario())
        assert ledger.spent(UNLIMITED) == 0 and ledger.reserved() == 0

    @pytest.fixture
    def make(self, ray_session, tmp_path):
        import ray

        from api_model_management.runtime._actors import CostLedgerActor
        from api_model_management.runtime._ports import RaySliceGranter

        with ray_actors() as actors:
            def make(limits: list[dict[str, str]]) -> Ledger:
                config = config_in(tmp_path, budgets={"enforcement": "strict", "limits": limits})
                actor = actors.start(CostLedgerActor, config)
                ports = slices(RaySliceGranter(actor), config.settings.budgets)

                # run in the actor on its core (closures: pickled by value, not by module)
                def spent(key: SpendKey) -> Decimal:
                    def counted(shell, agent_type: str) -> Decimal:
                        pending = sum((r.amount_usd for r in shell.core.reservations()
                                       if r.kind == "pending" and r.key.agent_type == agent_type),
                                      Decimal(0))
                        return shell.core.spend("agent_type", agent_type, "day") + pending

                    return ray.get(actor.__ray_call__.remote(counted, key.agent_type))

                def reserved() -> Decimal:
                    return ray.get(actor.__ray_call__.remote(
                        lambda shell: shell.core.reserved_usd() - shell.core.pending_usd()))

                return Ledger(list(ports), lambda: flush_all(ports), spent, reserved)

            yield make
