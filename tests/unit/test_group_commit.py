"""Outcomes are committed in groups (services.notify.sending.GroupCommit): an email's sender
waits for its commit (`add`); SMS senders do not (`submit`), and `drain` waits for every
submitted outcome and raises the first failure, losing none of the others."""

from __future__ import annotations

import asyncio

import pytest

from services.notify.sending import Due, GroupCommit, Outcome


def due(i: int) -> Due:
    return Due(f"d{i}", "n1", None, "sms", f"+3864012{i:04d}", "sl", 0)


class Recorder:
    def __init__(self, fail_on: int | None = None) -> None:
        self.commits: list[list[str]] = []
        self.fail_on = fail_on

    async def __call__(self, results: list[tuple[Due, Outcome]]) -> None:
        await asyncio.sleep(0.01)  # a commit takes a while: what arrives meanwhile waits for the next
        if self.fail_on is not None and len(self.commits) == self.fail_on:
            self.commits.append([])
            raise RuntimeError("database is locked")
        self.commits.append([d.id for d, _ in results])


async def test_submitted_outcomes_are_committed_in_groups_and_drained() -> None:
    record = Recorder()
    group = GroupCommit(record)
    for i in range(5):
        group.submit((due(i), Outcome("sent")))
    await asyncio.sleep(0.001)  # the first commit has started with what was there
    for i in range(5, 50):
        group.submit((due(i), Outcome("sent")))
    await group.drain()
    committed = [d for commit in record.commits for d in commit]
    assert committed == [f"d{i}" for i in range(50)]  # each once, in order
    assert len(record.commits) == 2  # what came during the first commit went into the second
    await group.drain()  # nothing pending: returns at once


async def test_a_failed_commit_is_raised_by_drain_and_the_next_commit_goes_on() -> None:
    record = Recorder(fail_on=0)
    group = GroupCommit(record)
    group.submit((due(0), Outcome("sent")))
    await asyncio.sleep(0.001)  # its commit has started
    group.submit((due(1), Outcome("sent")))
    with pytest.raises(RuntimeError, match="database is locked"):
        await group.drain()
    assert record.commits == [[], ["d1"]]  # the first group failed; the one behind it committed


async def test_add_waits_for_its_own_commit() -> None:
    record = Recorder()
    group = GroupCommit(record)
    await asyncio.gather(*(group.add((due(i), Outcome("sent"))) for i in range(3)))
    assert [d for commit in record.commits for d in commit] == ["d0", "d1", "d2"]


async def test_outcomes_ready_over_the_next_turns_share_the_first_ones_commit() -> None:
    """Recorded on the event loop's own thread, a commit gives others no time to arrive while
    it runs: the emails whose SMTP replies come in the next turns of the loop join the first
    one's commit (each connection still waits for its own). Nothing else coming, a commit
    waits one turn, not more."""
    record = Recorder()
    group = GroupCommit(record)

    async def after(turns: int, i: int) -> None:
        for _ in range(turns):
            await asyncio.sleep(0)
        await group.add((due(i), Outcome("sent")))

    # one more in each turn, then none for a few turns: the gathering stops, d6 goes next
    await asyncio.gather(*(after(turn, i) for i, turn in enumerate([0, 0, 1, 2, 3, 4, 9])))
    assert record.commits == [["d0", "d1", "d2", "d3", "d4", "d5"], ["d6"]]

    record.commits.clear()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await group.add((due(9), Outcome("sent")))
    assert record.commits == [["d9"]]
    assert loop.time() - started < 1


async def test_submitted_outcomes_linger_to_share_a_commit() -> None:
    """Answers of a slow gateway arrive one by one: they wait (linger) to share one commit,
    a full page goes at once, and drain commits what still lingers without waiting."""
    record = Recorder()
    group = GroupCommit(record, linger=10.0, page=5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for i in range(3):  # one by one, well apart
        group.submit((due(i), Outcome("sent")))
        await asyncio.sleep(0.02)
    assert record.commits == []  # still lingering
    for i in range(3, 5):
        group.submit((due(i), Outcome("sent")))  # d4 fills a page of 5: committed now
    await asyncio.sleep(0.05)
    assert record.commits == [["d0", "d1", "d2", "d3", "d4"]]
    for i in range(5, 7):
        group.submit((due(i), Outcome("sent")))
    await asyncio.sleep(0.05)
    assert len(record.commits) == 1  # d5 and d6 linger
    await group.drain()  # d5 and d6 were lingering: committed at once, not after 10 s
    assert record.commits == [["d0", "d1", "d2", "d3", "d4"], ["d5", "d6"]]
    assert loop.time() - started < 5


async def test_drain_does_not_linger_for_what_arrived_during_a_commit() -> None:
    record = Recorder()
    group = GroupCommit(record, linger=10.0, page=2)
    group.submit((due(0), Outcome("sent")))
    group.submit((due(1), Outcome("sent")))  # a full page: its commit starts at once
    await asyncio.sleep(0.001)
    group.submit((due(2), Outcome("sent")))  # arrives while that commit runs
    started = asyncio.get_running_loop().time()
    await group.drain()
    assert record.commits == [["d0", "d1"], ["d2"]]
    assert asyncio.get_running_loop().time() - started < 5  # not the 10 s linger
