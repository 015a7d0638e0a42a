"""OPC-UA collector (asyncua 2.1.0): subscriptions, security, reconnect, back-fill.

``edge.config.SOURCE_TYPES["opcua"]`` points here; see README.md beside this file.
"""

from .collector import Source
from .config import BackfillConfig, Config, FolderSpec, GroupConfig, SecurityConfig

__all__ = ["BackfillConfig", "Config", "FolderSpec", "GroupConfig", "SecurityConfig", "Source"]
