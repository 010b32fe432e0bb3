"""The matrix: the conformance suite run in several environments on this machine (native,
unprivileged, gVisor, qemu guests, confined sandboxes) and merged into one table."""
