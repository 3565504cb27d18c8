"""How a collector runs: its settings, and the running parts handed to every request.

`Settings` is what ``tamperscope serve`` options fill in; `Collector` is the
running instance (store, raw log, reader, writer, rate limiters) that
`server.serve` opens and starts before uvicorn (else the app's lifespan does),
that the lifespan stops, and that handlers reach as
``request.app.state.collector``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from tamperscope.analysis.store import Store
from tamperscope.collector.findings import Findings
from tamperscope.collector.ingestor import Ingestor, to_the_end
from tamperscope.collector.queries import Reader
from tamperscope.collector.ratelimit import RateLimiter
from tamperscope.collector.rawlog import RawLog, collector_dir_for
from tamperscope.collector.schema import Limits

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


@dataclass(frozen=True)
class Settings:
    """Everything ``serve`` can be told."""

    db_path: Path                        # the analysis store (created if missing)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    limits: Limits = field(default_factory=Limits)
    submit_rate: float = 20.0            # submissions per second per client address (<= 0: no limit)
    submit_burst: float = 400.0          # submissions a client may send at once
    read_rate: float = 50.0              # page and API requests per second per client (<= 0: no limit)
    read_burst: float = 200.0
    admin_token: str | None = None       # None: admin actions disabled
    memory_limit: str = "1GB"            # DuckDB's
    announce: bool = True                # print what the server does on stderr
    accept_submissions: bool = True      # False: read-only explorer and API (demo)
    # reverse proxies whose X-Forwarded-For names the client (rate limits and export slots are per client);
    # set here, never from uvicorn's $FORWARDED_ALLOW_IPS, which could trust everyone ("*")
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    findings_dir: Path | None = None     # researchers' findings, one text file each (collector/findings.py)
    # the server's own address in absolute links (the API's next_url, measurement_url, the feeds' ids and links),
    # "https://explorer.example.org"; None: the request's Host, which a client chooses
    public_url: str | None = None


def open_store(settings: Settings) -> Store:
    """The store as the collector uses it: no background writer of its own (the ingestor is one)."""
    return Store(settings.db_path, memory_limit=settings.memory_limit, background=False)


@dataclass
class Collector:
    """The running parts; one per app."""

    settings: Settings
    store: Store
    rawlog: RawLog
    reader: Reader
    ingestor: Ingestor
    submit_limiter: RateLimiter
    read_limiter: RateLimiter
    findings: Findings
    started: float = field(default_factory=time.time)
    _stopping: asyncio.Future[None] | None = field(default=None, init=False, repr=False)

    @classmethod
    def open(cls, settings: Settings, store: Store | None = None) -> Collector:
        """Open the store (unless given) and the raw log; the caller starts the ingestor."""
        store = store or open_store(settings)
        rawlog = RawLog(collector_dir_for(Path(store.path)))
        announce = None if settings.announce else (lambda text: None)
        return cls(
            settings=settings, store=store, rawlog=rawlog, reader=Reader(store),
            ingestor=Ingestor(store, rawlog, announce=announce),
            submit_limiter=RateLimiter(settings.submit_rate, settings.submit_burst),
            read_limiter=RateLimiter(settings.read_rate, settings.read_burst),
            findings=Findings(settings.findings_dir, warn=None if settings.announce else (lambda line: None)),
        )

    async def start(self) -> None:
        await self.ingestor.start()

    async def stop(self) -> None:
        """Answer what is queued and close everything, once: a second call waits for the first's work, and a
        caller cancelled meanwhile (a second Ctrl-C during uvicorn's shutdown) still lets it end first."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())
        await to_the_end(self._stopping)

    async def _stop(self) -> None:
        self.reader.close()
        await self.ingestor.stop()


__all__ = ["Collector", "DEFAULT_HOST", "DEFAULT_PORT", "Settings", "open_store"]
