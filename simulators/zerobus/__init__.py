"""Local ZeroBus emulator: the cloud side for tests, drills and demos. See README.md."""
