"""A stand-in for an Ignition gateway running the ZeroBus tag-change scripts."""
