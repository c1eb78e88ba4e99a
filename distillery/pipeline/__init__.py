"""The library side of the KFP pipelines: each step on plain paths, the run report, local-run progress.

Nothing here imports ``kfp``: components (``components/``) and pipelines (``pipelines/``) are the adapters.
"""
