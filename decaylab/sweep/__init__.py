"""Sweeps over the paper's experiment families, the runner that trains them, and their report.

    decaylab sweep --preset quick            # all four families, micro model, CPU, < 15 minutes
    decaylab report runs/sweeps/quick-quick  # rewrite the report of a sweep directory

Modules: :mod:`~decaylab.sweep.presets` (families, scales, presets as data),
:mod:`~decaylab.sweep.runner` (run ids, skipping, resuming, parallel workers),
:mod:`~decaylab.sweep.evaluation` (per-run evaluation cached in the run directory),
:mod:`~decaylab.sweep.report` (tables, figures and the verdicts on the paper's claims).
"""
