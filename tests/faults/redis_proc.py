"""A ``redis-server`` of the scenario's own, on a free port, that a test may SIGKILL, freeze and restart.

Why not the shared Redis on 6379: the scenarios kill Redis, change its password, add ACL users and turn TLS on;
none of that may touch other tests. Why not ``tests.helpers.RedisServer``: it is synchronous (its readiness
loop would block the event loop the fake exchange runs in) and knows neither AOF, ACLs nor TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import redis.asyncio as aioredis

from tests.faults import servers
from tests.helpers import free_port


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA and a server certificate it signed (for 127.0.0.1), made with ``openssl``."""

    ca: Path
    cert: Path
    key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """Generate the CA and the server certificate in ``directory``; fails the test if ``openssl`` is missing."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is not installed: it makes the TLS scenario's certificates")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt"))
    ext = directory / "san.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    steps = [
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            ca_key,
            "-out",
            ca,
            "-days",
            "1",
            "-subj",
            "/CN=liquidation-stream test CA",
        ],
        [openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        [
            openssl,
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
            "-out",
            cert,
            "-days",
            "1",
            "-extfile",
            ext,
        ],
    ]
    for step in steps:
        subprocess.run([str(part) for part in step], check=True, capture_output=True, timeout=60)
    return TlsFiles(ca=ca, cert=cert, key=key)


class RedisProcess:
    """One ``redis-server``: AOF on or off, an optional password for the default user, optional TLS.

    The port is kept across restarts, so clients configured with its URL find it again, as after a real crash.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        aof: bool = False,
        fsync: str = "always",
        password: str | None = None,
        tls: TlsFiles | None = None,
        port: int | None = None,
        config_file: Path | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        """``port``, ``config_file`` and ``extra`` are for the cluster and Sentinel set-ups, which choose their
        nodes' ports and modes: a config file comes first (``redis-server FILE --sentinel``, a file Sentinel
        rewrites), right after it ``extra``; without a file ``extra`` comes last (``--cluster-enabled yes``)."""
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port() if port is None else port
        self.config_file = config_file
        self.extra = tuple(extra)
        self.aof = aof
        self.fsync = fsync
        self.password = password
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # --- addresses -------------------------------------------------------------------------------------------

    def url(self, user: str | None = None, password: str | None = None) -> str:
        """The URL a process is given; the default user with the admin password unless told otherwise."""
        if user is None and password is None:
            password = self.password
        auth = ""
        if password is not None:
            auth = f"{quote(user or '', safe='')}:{quote(password, safe='')}@"
        if self.tls is None:
            return f"redis://{auth}127.0.0.1:{self.port}/0"
        return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={quote(str(self.tls.ca), safe='/')}"

    def client(self, **kwargs: object) -> aioredis.Redis:
        """An admin client for the test's own checks (short timeouts: a check must never hang on a dead server)."""
        options: dict[str, object] = {"socket_timeout": 5, "socket_connect_timeout": 2}
        options.update(kwargs)
        return aioredis.Redis.from_url(self.url(), **options)  # type: ignore[arg-type]

    # --- lifecycle -------------------------------------------------------------------------------------------

    def _argv(self) -> list[str]:
        argv = [servers.binary("redis-server")]
        if self.config_file is not None:
            argv += [str(self.config_file), *self.extra]
        argv += [
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--save",
            "",
            "--logfile",
            str(self.workdir / "redis.log"),
            "--appendonly",
            "yes" if self.aof else "no",
        ]
        if self.aof:
            argv += ["--appendfsync", self.fsync]
        if self.tls is not None:
            argv += [
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                str(self.tls.cert),
                "--tls-key-file",
                str(self.tls.key),
                "--tls-ca-cert-file",
                str(self.tls.ca),
                "--tls-auth-clients",
                "no",
            ]
        else:
            argv += ["--port", str(self.port)]
        if self.password is not None:
            argv += ["--requirepass", self.password]
        if self.config_file is None:
            argv += self.extra
        return argv

    async def start(self, within: float = 20.0) -> float:
        """Start (or restart) the server and wait until it answers PING; returns the seconds that took."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("redis-server is already running")
        proc = self._spawn()
        client = self.client(socket_connect_timeout=0.5)
        try:
            return await servers.wait_answering(
                client, proc, within=within, what=f"redis-server on port {self.port}", log=self.workdir / "redis.log"
            )
        except servers.ServerDidNotStart as error:
            self.kill()
            if error.lost_port_race:
                raise  # whoever chose the port may choose another
            pytest.fail(str(error))
        finally:
            await client.aclose()

    def _spawn(self) -> subprocess.Popen[bytes]:
        # Popen only forks and execs: it does not block the event loop the fake exchange runs in.
        self.proc = subprocess.Popen(self._argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.starts += 1
        return self.proc

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final fsync; what survives is what the AOF already holds."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGCONT)  # a frozen server must not outlive the test either
                self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def freeze(self) -> None:
        """SIGSTOP: the server holds its connections but answers nothing (a hung Redis, or a long GC-like pause)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    async def stop(self) -> None:
        """SIGTERM (a clean shutdown), SIGKILL if it takes more than 10 s."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(self.proc.wait, 10)
        self.kill()

    def log_tail(self, lines: int = 20) -> str:
        return servers.log_tail(self.workdir / "redis.log", lines)
