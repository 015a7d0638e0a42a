"""YAML options of a ``synthetic`` source."""

from __future__ import annotations

from dataclasses import dataclass

from edge.config import SourceBase
from edge.configtypes import ConfigError, Duration


@dataclass
class Config(SourceBase):
    rate: float = 10.0  # readings per second, all points together
    points: int = 10
    prefix: str = "synthetic"
    batch_interval: Duration = Duration(0.1)  # emit what accumulated every this often
    unit: str = "degC"

    def validate(self, path: str) -> None:
        super().validate(path)
        if not 0 < self.rate <= 2_000_000:
            raise ConfigError(f"{path}.rate", "must be > 0 and <= 2000000 readings/s")
        if not 1 <= self.points <= 1_000_000:
            raise ConfigError(f"{path}.points", "must be between 1 and 1000000")
        if not 0.001 <= self.batch_interval <= 10:
            raise ConfigError(f"{path}.batch_interval", "must be between 1ms and 10s")
