"""The helpers' background task: started again after a failure, logged once a failure; left ended after a return."""

from __future__ import annotations

import asyncio
import logging

import pytest

from plumbing.restarting_task import RestartingTask

log = logging.getLogger("tests.restarting")


async def test_a_failed_task_is_logged_and_started_again_and_a_returned_one_stays_ended(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: list[str] = []

    async def fail_then_return() -> None:
        runs.append("run")
        if len(runs) == 1:
            raise ValueError("boom")

    task = RestartingTask("helper", "helper: the task", fail_then_return, log)
    task.start()
    await asyncio.sleep(0)
    task.start()  # the first run failed: a second one
    await asyncio.sleep(0)
    task.start()  # the second returned: ended on purpose
    await asyncio.sleep(0)
    assert runs == ["run", "run"]
    assert caplog.text.count("helper: the task failed (ValueError: boom); restarting it") == 1
    task.close()


async def test_close_cancels_a_running_task_which_start_does_not_restart() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = RestartingTask("helper", "helper", forever, log)
    task.start()
    await started.wait()
    task.close()
    await asyncio.sleep(0)
    started.clear()
    task.start()
    await asyncio.sleep(0)
    assert not started.is_set()
