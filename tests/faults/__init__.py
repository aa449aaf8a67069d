"""The fault suite: kills and restarts the real parts and checks that nothing is lost.

Every test runs its own throwaway Redis (``redis-server`` on a free port) and shares one
throwaway PostgreSQL cluster (``initdb`` + ``pg_ctl``, as the ``postgres`` user when run
as root), so it can stop and start them without touching the machine's services. Each test
writes its figures (kills and restarts survived, jobs lost, trace points lost) to
``out/faults/<test>.json`` and prints them as a ``FAULTS`` line; ``out/faults/summary.json``
sums them. ``.venv/bin/python -m pytest tests/faults -s`` shows the lines.
"""
