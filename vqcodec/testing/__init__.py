"""Test tooling that ships with the package: the tiny random-init models every test builds, and the
fuzz harness (``python -m vqcodec.testing.fuzz``). Nothing here is imported by the codec itself."""
