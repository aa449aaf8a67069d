"""The job spec and its admission: the model, the compute budget, the one admission.

:mod:`.job` holds the spec's models, :mod:`.budget` what a spec costs, :mod:`.admission`
the one function every entry calls. Nothing is imported here: import the module you need
(the spec's module discovers the plugins, whose options modules import :mod:`jobs.plugins`).
"""
