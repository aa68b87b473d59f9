"""Our processes as users run them: ``python -m producer`` and the consumers, as real subprocesses.

Why subprocesses: a SIGKILL, a lost socket or a restart is only real for a real process. Output goes to files,
not pipes, so a chatty process can never block on a full pipe while the test waits for something else, and the
logs can be searched (and shown on failure) after the process is gone.

Every exit is accounted for: a process the test killed (SIGKILL) or stopped (SIGTERM) is expected to exit that
way; any other exit is a crash, and :func:`crashes` lists it.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]

_OUR_VARIABLES = (
    "HL_",
    "LIQ_",
    "REDIS_URL",
    "REDIS_CLUSTER_NODES",
    "REDIS_SENTINEL",
    "REDIS_WAIT_",
    "ALERT_",
    "STATS_",
    "METRICS_",
    "HEALTH_",
    "LOG_LEVEL",
    "TELEGRAM_",
    "DISCORD_",
    "SLACK_",
)
"""Prefixes of the settings our processes read: never inherited from the developer's shell."""


class Proc:
    """One subprocess, with its stdout and stderr in ``<logdir>/<name>.out`` and ``.err``."""

    def __init__(
        self,
        name: str,
        module: str,
        env: Mapping[str, str],
        logdir: Path,
        args: Iterable[str] = (),
        *,
        open_files: int | None = None,
    ) -> None:
        self.name = name
        self.open_files = open_files
        """A soft limit on open files (RLIMIT_NOFILE) for the process, as a small container has."""
        self.module = module
        self.args = list(args)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(_OUR_VARIABLES)}
        self.env.update(env)
        self.out_path = logdir / f"{name}.out"
        self.err_path = logdir / f"{name}.err"
        self.proc: asyncio.subprocess.Process | None = None
        self.started_at = 0.0
        self.meant = ""
        """How the test ended it on purpose: "" (not yet), "killed" (SIGKILL), "stopped" (SIGTERM), or "awaited"
        (the test waited for it to exit on its own, ``--once``, and checks the code itself)."""
        self._files: list[IO[bytes]] = []

    async def start(self) -> Proc:
        out, err = self.out_path.open("ab"), self.err_path.open("ab")
        self._files = [out, err]
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            self.module,
            *self.args,
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=err,
            preexec_fn=self._limit if self.open_files is not None else None,
        )
        self.started_at = time.monotonic()
        self.meant = ""
        return self

    def _limit(self) -> None:
        assert self.open_files is not None
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files, hard))

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def kill(self) -> None:
        """SIGKILL, on purpose: no handler runs, nothing is flushed."""
        if self.alive:
            self.meant = "killed"
            self.proc.kill()  # type: ignore[union-attr]

    def signal(self, sig: signal.Signals) -> None:
        """Any other signal (SIGSTOP/SIGCONT to freeze it); SIGTERM marks the exit as asked for."""
        if self.alive:
            if sig in (signal.SIGTERM, signal.SIGINT):
                self.meant = "stopped"
            self.proc.send_signal(sig)  # type: ignore[union-attr]

    async def wait(self, within: float = 30.0) -> int:
        """The exit code, waiting at most ``within`` seconds (then the process is killed and the test fails)."""
        assert self.proc is not None
        self.meant = self.meant or "awaited"
        try:
            code = await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            self.kill()
            await self.proc.wait()
            raise AssertionError(f"{self.name} did not exit within {within:g} s:\n{self.tail()}") from None
        self._close_files()
        return code

    async def stop(self, within: float = 30.0) -> int:
        """SIGTERM and the exit code: how a supervisor stops a process."""
        self.signal(signal.SIGTERM)
        return await self.wait(within)

    async def kill_and_reap(self) -> None:
        self.kill()
        if self.proc is not None:
            await self.proc.wait()
        self._close_files()

    def _close_files(self) -> None:
        for handle in self._files:
            handle.close()
        self._files = []

    # --- what it said ----------------------------------------------------------------------------------------

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace") if self.err_path.exists() else ""

    def tail(self, lines: int = 30) -> str:
        text = self.stderr().splitlines()[-lines:]
        return f"--- {self.name} ({self.module}) stderr, last {len(text)} lines ---\n" + "\n".join(text)

    @property
    def crashed(self) -> bool:
        """Exited although the test neither killed nor stopped it, or exited non-zero after a SIGTERM."""
        code = self.returncode
        if code is None:
            return False
        if self.meant in ("killed", "awaited"):
            return False
        if self.meant == "stopped":
            return code != 0
        return True

    def rss_kib(self) -> int:
        """Resident memory now, from /proc (KiB); 0 once the process is gone."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except (OSError, AssertionError):
            pass
        return 0


def crashes(procs: Iterable[Proc]) -> list[str]:
    """The processes that exited on their own, with the end of their logs: the "no crash" invariant."""
    return [f"{p.name} exited {p.returncode}\n{p.tail()}" for p in procs if p.crashed]


def count_lines(text: str, needle: str) -> int:
    return sum(1 for line in text.splitlines() if needle in line)
