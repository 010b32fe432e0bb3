"""The ``memsyscalls`` command (also ``python -m pytest_memsyscalls``): the top layer."""
