"""Sweeps over the paper's experiment families, the runner that trains them, and their report.

    decaylab sweep --preset quick            # all four families, micro model, CPU, < 15 minutes
    decaylab report runs/sweeps/quick-quick  # rewrite the report of a sweep directory

Modules, in the order they import each other:
:mod:`~decaylab.sweep.presets` (families, scales and presets as data; a design is a ``DecaySpec``),
:mod:`~decaylab.sweep.rundir` (the sweep directory: its layout, files and results),
:mod:`~decaylab.sweep.evaluation` (per-run evaluation cached in the run directory),
:mod:`~decaylab.sweep.runner` (execution: the worker pool and the worker process),
:mod:`~decaylab.sweep.verdicts` (statistics and the rules of the paper's claims, pure functions),
:mod:`~decaylab.sweep.report` (tables, figures and Markdown). The commands are
:mod:`decaylab.commands.sweep` and :mod:`decaylab.commands.report`.
"""
