"""The library side of ``distillery run``: the run's arguments and machine fit, the run report, local-run progress.

The steps themselves are the stage modules of :mod:`distillery.stages`.

Nothing here imports ``kfp``: components (``components/``) and pipelines (``pipelines/``) are the adapters.
"""
