"""The conformance report as data: the v1 JSON document (``model``), the baseline gate's
comparison (``baseline``), its text rendering (``diff``) and the JUnit XML properties that
carry each test's outcome (``junit``). Plain dicts and dataclasses; no pytest hooks.

PYTEST_DONT_REWRITE: loaded into every pytest session (plugin/activation.py says why).
"""
