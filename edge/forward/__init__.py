"""The forwarder: spool -> ZeroBus, by role.

- ``loop``: the Forwarder thread (window, watermark, protection, retries);
- ``sink``: the Sink seam and the ZeroBus SDK behind it (open, ingest, acks, classify);
- ``spoolside``: reading under protection, recording acks, the backlog;
- ``isolate``: bisecting a rejected batch, dead-lettering the record;
- ``framing``: spool rows -> ZeroBus records;
- ``telemetry``: counters, state, cuts, persisted for the admin page;
- ``scrub``: what may be said about credentials and proxies.
"""

from edge.forward.framing import Framer
from edge.forward.loop import Forwarder
from edge.forward.scrub import Scrubber, proxy_summary

__all__ = ["Forwarder", "Framer", "Scrubber", "proxy_summary"]
