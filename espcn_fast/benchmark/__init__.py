"""Frame times of espcn_fast's backends next to what users would run instead, every row checked first.

``python benchmarks/run.py`` (or ``python -m espcn_fast.benchmark``) runs it; the pieces, in the
order a run goes through them: :mod:`.config` (the frames, the rows and their tolerances),
:mod:`.grid` (each row checked against the float64 reference, then timed), :mod:`.speedups`
(each row against eager PyTorch), :mod:`.report` (the table, the JSON and the chart), :mod:`.cli`.
Beside them: :mod:`.peers` (the alternatives made ready to time), :mod:`.timing`, :mod:`.memory`,
:mod:`.machine`, :mod:`.malloc_env`.
"""
