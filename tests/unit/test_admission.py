"""Admitting requests to the database: a few at once while they run, in the order they
came; one that outlasts its turn lets the next in; none is lost to a cancellation."""

from __future__ import annotations

import asyncio

import pytest

from bastion.platform.admission import Admission

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


class _Requests:
    """Requests that take a turn and hold it until told to leave."""

    def __init__(self, admission: Admission) -> None:
        self.admission = admission
        self.inside: list[int] = []
        self.order: list[int] = []
        self._leave: dict[int, asyncio.Event] = {}
        self.tasks: dict[int, asyncio.Task[None]] = {}

    def start(self, number: int) -> None:
        self._leave[number] = asyncio.Event()
        self.tasks[number] = asyncio.create_task(self._request(number))

    async def _request(self, number: int) -> None:
        async with self.admission.turn():
            self.inside.append(number)
            self.order.append(number)
            try:
                await self._leave[number].wait()
            finally:
                self.inside.remove(number)

    def leave(self, number: int) -> None:
        self._leave[number].set()


async def test_only_the_running_count_is_inside_and_the_rest_come_in_order() -> None:
    requests = _Requests(Admission(total=50, running=2, quick_for=60))
    for number in range(6):
        requests.start(number)
    await _settle()
    assert requests.inside == [0, 1]

    requests.leave(1)
    await _settle()
    assert requests.inside == [0, 2]
    for number in (0, 2, 3, 4, 5):
        requests.leave(number)
        await _settle()
    assert requests.order == [0, 1, 2, 3, 4, 5]
    assert requests.admission.admitted == requests.admission.busy == 0


async def test_a_request_that_outlasts_its_turn_lets_the_next_in() -> None:
    """A request waiting on a peer or the network holds no turn once `quick_for` has
    passed; the quick ones behind it are not held up."""
    requests = _Requests(Admission(total=50, running=1, quick_for=0.05))
    requests.start(0)
    requests.start(1)
    await _settle()
    assert requests.inside == [0]

    await asyncio.sleep(0.1)
    assert sorted(requests.inside) == [0, 1]
    assert requests.admission.outlasted >= 1
    requests.leave(0)
    requests.leave(1)
    await asyncio.gather(*requests.tasks.values())
    assert requests.admission.admitted == requests.admission.busy == 0


async def test_the_total_bounds_requests_inside_however_long_they_take() -> None:
    """Every request inside holds a database connection: the pool's bound holds even
    when all of them have outlasted their turns."""
    requests = _Requests(Admission(total=2, running=1, quick_for=0.01))
    for number in range(3):
        requests.start(number)
    await asyncio.sleep(0.1)
    assert sorted(requests.inside) == [0, 1]

    requests.leave(0)
    await _settle()
    assert sorted(requests.inside) == [1, 2]
    requests.leave(1)
    requests.leave(2)
    await asyncio.gather(*requests.tasks.values())


async def test_a_request_cancelled_while_waiting_takes_no_turn() -> None:
    requests = _Requests(Admission(total=50, running=1, quick_for=60))
    for number in range(3):
        requests.start(number)
    await _settle()
    requests.tasks[1].cancel()
    await _settle()

    requests.leave(0)
    await _settle()
    assert requests.inside == [2]
    requests.leave(2)
    await _settle()
    assert requests.admission.admitted == requests.admission.busy == 0
    assert requests.tasks[1].cancelled()


async def test_a_request_cancelled_as_it_was_let_in_passes_its_turn_on() -> None:
    """Let in by the one leaving before it, and cancelled before it ran: its turn goes
    to the next instead of being lost."""
    requests = _Requests(Admission(total=50, running=1, quick_for=60))
    leave = asyncio.Event()

    async def first() -> None:
        async with requests.admission.turn():
            await leave.wait()
        assert 1 not in requests.order  # let in, but not yet run ...
        requests.tasks[1].cancel()  # ... and cancelled in the same step

    first_task = asyncio.create_task(first())
    await _settle()
    requests.start(1)
    requests.start(2)
    await _settle()
    assert requests.inside == []  # the first holds the one turn

    leave.set()
    await _settle()
    assert requests.inside == [2]
    requests.leave(2)
    await asyncio.gather(first_task, requests.tasks[2])
    assert requests.tasks[1].cancelled()
    assert requests.order == [2]
    assert requests.admission.admitted == requests.admission.busy == 0


async def test_a_request_that_fails_gives_its_turn_back() -> None:
    admission = Admission(total=50, running=1, quick_for=60)
    with pytest.raises(RuntimeError):
        async with admission.turn():
            raise RuntimeError("the endpoint failed")
    assert admission.admitted == admission.busy == 0
    async with admission.turn():
        assert admission.busy == 1


def test_an_admission_needs_room_for_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Admission(total=0, running=2)
    with pytest.raises(ValueError, match="at least 1"):
        Admission(total=50, running=0)
