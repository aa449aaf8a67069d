"""A Celery worker on which no problem plugin is installed: the fault suite's missing plugin.

    python -m tests.faults.pluginless_worker -A worker.app worker --pool solo -Q ...

The test environment has the example plugin installed; this module hides the
``bilevel.problems`` entry-point group from this process (before anything imports
``jobs``, which discovers the plugins once) and then runs Celery's own command line in this
same process, so that the production code carries no test knob. Not a test module:
``PluginlessWorker`` starts it.
"""

from __future__ import annotations

import sys
from importlib import metadata
from typing import Any

GROUP = "bilevel.problems"  # jobs.plugins.GROUP; importing jobs here would discover them


def install() -> None:
    """Make ``importlib.metadata.entry_points`` answer no entry point of the plugins' group."""
    entry_points = metadata.entry_points

    def without_plugins(**params: Any) -> Any:
        if params.get("group") == GROUP:
            return metadata.EntryPoints(())
        return entry_points(**params)

    metadata.entry_points = without_plugins  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> None:
    """Celery's arguments (what follows ``celery`` on its command line)."""
    from celery.__main__ import main as celery_main

    sys.argv = ["celery", *(sys.argv[1:] if argv is None else argv)]
    celery_main()


# The watchdog's job process is spawned: it re-imports this module as ``__mp_main__`` and
# runs the jobs there, so the plugins are hidden in it as in the Celery process.
if __name__ in ("__main__", "__mp_main__"):
    if "jobs" in sys.modules:
        raise RuntimeError("jobs was imported before the plugins could be hidden")
    install()

if __name__ == "__main__":
    main()
