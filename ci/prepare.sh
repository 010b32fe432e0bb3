#!/usr/bin/env bash
# The preparation of matrix targets ships inside the package (memsyscalls prepare);
# this wrapper keeps `ci/prepare.sh TARGET...` working from a checkout.
exec bash "$(dirname "$0")/../pytest_memsyscalls/matrix/prepare.sh" "$@"
