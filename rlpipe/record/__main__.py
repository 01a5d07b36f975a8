"""``python -m rlpipe.record <mode> key=value ...`` (:mod:`rlpipe.record.cli`)."""

from rlpipe.record.cli import run

run()
