"""A rendezvous for two tests in two xdist workers, as source text for pytester
conftest files: both tests reach the barrier before either goes on (FIFOs, no sleeps),
so the two workers really do their work at the same moment."""

BARRIER = r'''
import os, select


def barrier(me, other, timeout=30.0):
    """Both tests reach this point before either goes on (FIFOs: no sleeps)."""
    directory = os.environ["MEMSYS_BARRIER_DIR"]
    mine = os.open(os.path.join(directory, me), os.O_RDWR)
    theirs = os.open(os.path.join(directory, other), os.O_RDWR)
    try:
        os.write(theirs, b"x")
        poller = select.poll()
        poller.register(mine, select.POLLIN)
        assert poller.poll(int(timeout * 1000)), f"{other} never reached the barrier"
        os.read(mine, 1)
    finally:
        os.close(theirs)
        os.close(mine)
'''
