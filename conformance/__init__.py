"""The conformance suite: one module per call family; every test names its semantic."""
