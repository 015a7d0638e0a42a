"""The source runtime's names in one import (kept for the modules that import them from here).

The runtime itself is split by job: ``context`` (what a collector gets),
``status`` (its counters), ``states`` (the state enum and severities),
``sink`` (the seam to the spool writer), ``supervisor`` (connect / reconnect /
backoff for every source).
"""

from edge.sources.context import SourceContext, emit_with_backpressure
from edge.sources.sink import Item, Sink
from edge.sources.states import SEVERITY, State
from edge.sources.status import SourceStatus, now_us

__all__ = ["SEVERITY", "Item", "Sink", "SourceContext", "SourceStatus", "State", "emit_with_backpressure", "now_us"]
