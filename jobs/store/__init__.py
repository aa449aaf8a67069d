"""The job store: the only SQL of the service.

- :mod:`jobs.store.base`: the declarative base, its naming convention and column types;
- :mod:`jobs.store.models`: the tables, one module per resource;
- :mod:`jobs.store.repo`: every query and state transition, one module per concern;
- :mod:`jobs.store.db`: engines and sessions (the migrations live in :mod:`migrations`).

Nothing is imported here, so that ``jobs.store.db`` loads without the tables.
"""
