"""`edge run`: the spool writer, the forwarder and every enabled source in one process.

Exactly one process writes a spool: this one. Sources are asyncio tasks (their
blocking libraries run in their own threads), the writer is one thread, the
forwarder is one thread. A source that crashes is restarted with backoff and
its error is visible in its state; it never takes the others down. SIGTERM and
SIGINT stop collection first, then let the forwarder finish its in-flight
window, then close the spool cleanly (nothing depends on a clean stop: a
SIGKILL loses nothing that was committed).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
import threading
from pathlib import Path

from edge.config import SOURCE_TYPES, Config
from edge.sources.context import SourceContext
from edge.sources.states import State
from edge.sources.status import SourceStatus
from edge.sources.supervisor import Supervisor

log = logging.getLogger("edge.runner")


def open_spool(cfg: Config):
    from edge.spool import Spool

    Path(cfg.spool.path).parent.mkdir(parents=True, exist_ok=True)
    return Spool.open(
        cfg.spool.path,
        appliance_id=cfg.appliance_id,
        max_bytes=int(cfg.spool.max_bytes),
        when_full=cfg.spool.when_full,
        max_age_s=float(cfg.spool.max_age) if cfg.spool.max_age is not None else None,
        min_free_bytes=int(cfg.spool.min_free_bytes),
        side_max_bytes=None if cfg.spool.side_max_bytes is None else int(cfg.spool.side_max_bytes),
        ballast_bytes=None if cfg.spool.ballast_bytes is None else int(cfg.spool.ballast_bytes),
    )


class Appliance:
    def __init__(self, cfg: Config, *, forward: bool = True):
        self.cfg = cfg
        self.forward = forward
        self.writer = None
        self.forwarder = None
        self._reader = None
        self._reader_lock = threading.Lock()
        self._tasks: list[asyncio.Task] = []
        self._stop = asyncio.Event()

    def _context(self, src_cfg) -> SourceContext:
        status = SourceStatus(src_cfg.name, src_cfg.type, self.writer.put_state)
        data_dir = Path(self.cfg.data_dir) / "sources" / src_cfg.name
        data_dir.mkdir(parents=True, exist_ok=True)
        # The writer is the sink (edge/sources/sink.py): a source in a worker process would get a proxy of it.
        return SourceContext.for_sink(self.writer, status, appliance_id=self.cfg.appliance_id, data_dir=data_dir,
                                      stats=self.stats)

    def stats(self) -> dict:
        """Live numbers for sources that report them (the http source's diagnostics)."""
        from edge.spool import SpoolReader

        with self._reader_lock:  # one connection, called from the http source's handler threads
            if self._reader is None:
                self._reader = SpoolReader(self.cfg.spool.path)
            spool = self._reader.stats()
        return {
            "spool": spool,
            "forwarder": self.forwarder.state() if self.forwarder else {"state": "disabled"},
        }

    async def _supervise(self, src_cfg) -> None:
        """Run one collector; one that crashes is restarted by the same supervisor every source uses."""
        module = importlib.import_module(SOURCE_TYPES[src_cfg.type])
        ctx = self._context(src_cfg)
        try:
            await Supervisor(_Collector(module, src_cfg, ctx), ctx.status, initial=1.0, cap=60.0,
                             healthy_after=60.0, phase="run", log=log).run()
        except asyncio.CancelledError:
            ctx.status.set_state(State.STOPPED)
            raise

    async def run(self) -> None:
        from edge.writer import SpoolWriter

        cfg = self.cfg
        spool = open_spool(cfg)
        self.writer = SpoolWriter(spool)
        if self.forward:
            from edge.forward import Forwarder

            self.forwarder = Forwarder(
                cfg.zerobus, appliance_id=cfg.appliance_id, spool_path=cfg.spool.path, writer=self.writer
            )
            self.writer.on_commit = self.forwarder.notify
            self.forwarder.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._stop.set)
            except (NotImplementedError, RuntimeError):  # not the main thread (tests)
                pass
        self._tasks.append(asyncio.create_task(self._operator_requests(), name="operator-requests"))
        enabled = [s for s in cfg.sources if s.enabled]
        for s in enabled:
            self._tasks.append(asyncio.create_task(self._supervise(s), name=f"source:{s.name}"))
        log.info(
            "appliance %s running: %d source(s) [%s], forwarding %s to %s",
            cfg.appliance_id, len(enabled), ", ".join(s.name for s in enabled),
            "on" if self.forward else "off", cfg.zerobus.endpoint,
        )
        try:
            await self._stop.wait()
        finally:
            await self.shutdown()

    def _handlers(self) -> dict:
        """What the admin page's operator requests map to (edge/control/commands.py)."""
        writer = self.writer

        def checkpoint(_args: dict) -> str:
            return writer.call(lambda spool: spool.checkpoint("TRUNCATE")).result(timeout=60)

        def retry(args: dict) -> str:
            dl_id = int(args["id"])
            result = writer.call(lambda spool: spool.retry_dead_letter(dl_id)).result(timeout=60)
            return f"re-appended as seq {result.first_seq}"

        def preflight(_args: dict) -> str:
            # Runs on the operator-requests worker thread (commands.process is under asyncio.to_thread),
            # so collection and forwarding go on; requests queued behind it wait until it is done (in order).
            import time

            from edge.control import preflight as pf
            from edge.control.doctor import Doctor

            started = time.time()
            checks = Doctor(self.cfg, timeout=10).run(with_stream=True)
            rec = pf.record(checks, started_ts=started, finished_ts=time.time(),
                            secrets=[self.cfg.zerobus.client_secret])
            writer.put_state(pf.KIND, pf.NAME, rec).result(timeout=60)
            return pf.summary(rec)

        def source_checks(_args: dict) -> str:
            # Like the preflight: on the operator-requests worker thread, with probes of their own
            # (their own connections and client ids), so the collectors' sessions are left alone.
            import time

            from edge.control import sourcedoctor, sourcereport

            started = time.time()
            checks = sourcedoctor.run(self.cfg, timeout=5)
            rec = sourcereport.record(checks, started_ts=started, finished_ts=time.time(),
                                      secrets=sourcedoctor.secrets_of(self.cfg))
            writer.put_state(sourcereport.KIND, sourcereport.NAME, rec).result(timeout=60)
            return sourcereport.summary(rec)

        handlers = {"checkpoint_wal": checkpoint, "retry_dead_letter": retry, "run_preflight": preflight,
                    "run_source_checks": source_checks}
        fwd = self.forwarder
        if fwd is not None and hasattr(fwd, "pause"):
            handlers["pause_forwarding"] = lambda _args: fwd.pause() or "forwarding paused"
            handlers["resume_forwarding"] = lambda _args: fwd.resume() or "forwarding resumed"
        return handlers

    async def _operator_requests(self, every: float = 1.0) -> None:
        from edge.control import commands

        directory = commands.directory(self.cfg)
        handlers = self._handlers()
        while True:
            try:
                n = await asyncio.to_thread(commands.process, directory, handlers)
                if n:
                    log.info("handled %d operator request(s) from %s", n, directory)
            except Exception:  # a broken request file must not stop the appliance
                log.exception("operator requests in %s", directory)
            await asyncio.sleep(every)

    def request_stop(self) -> None:
        self._stop.set()

    async def shutdown(self) -> None:
        log.info("stopping: collection first, then the forwarder, then the spool")
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.forwarder is not None:
            await asyncio.to_thread(self.forwarder.stop, 10.0)
        if self.writer is not None:
            await asyncio.to_thread(self.writer.close)
        if self._reader is not None:
            self._reader.close()
        log.info("stopped")


class _Collector:
    """A whole collector as the supervisor's session: a new ``Source`` per attempt."""

    def __init__(self, module, src_cfg, ctx: SourceContext):
        self.module, self.src_cfg, self.ctx = module, src_cfg, ctx

    async def connect(self) -> None:
        pass

    async def serve(self) -> None:
        await self.module.Source(self.src_cfg, self.ctx).run()
        raise RuntimeError("the collector returned; restarting it")

    async def close(self) -> None:
        pass


def run(cfg: Config, *, forward: bool = True) -> None:
    asyncio.run(Appliance(cfg, forward=forward).run())
