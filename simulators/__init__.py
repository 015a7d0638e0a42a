"""Everything that plays the outside world: devices, brokers, the ZeroBus cloud."""
