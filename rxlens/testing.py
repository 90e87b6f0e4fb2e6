"""pytest plugin: fixtures for testing pipelines against the Lens emulator.

Registered through the ``pytest11`` entry point, so any project that installs rxlens gets the
fixtures without configuration.
"""
