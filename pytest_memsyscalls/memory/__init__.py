"""Memory objects that clean up after themselves: mappings and the MAP_FIXED arena, SysV
and POSIX shared memory, the brk helper's front end, forked children that catch faults,
the durable records that let a later run sweep what a killed one left, and the
expectations (``fails_with``, ``succeeds``, ``faults_with``) whose failures carry the
call, what was expected and what was observed. Usable without pytest.

PYTEST_DONT_REWRITE: loaded into every pytest session (plugin/activation.py says why).
"""
