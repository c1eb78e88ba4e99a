"""A/B stage: champion vs challenger with simulated users and the sequential promotion gate.

One implementation for ``distillery abtest`` (queries of ``--data``) and the pipeline's ``ab_evaluation``
component (the prepared dataset's held-out test queries).  Through Triton (default): both students in one
model repository, a real ``tritonserver``, the splitter as its own process on loopback
(:mod:`distillery.abtest.local`).  In process (``in_process=True``): the students (or the reference rankers
``oracle``, ``random``, ``worst``) score in this process, no Triton, no HTTP.  The gate's settings are
``cfg.abtest`` (:class:`distillery.config.ABTestConfig`), the one definition the operator maps CRs onto too.

Writes ``decision.json``, ``report.md``, ``lift.png``, ``arms.png`` and ``metrics.json``; through Triton
also ``exposures.jsonl``, ``events.jsonl``, ``splitter_metrics.prom``.

CPU command::

    distillery abtest --in-process --champion random --challenger oracle --data synthetic:3000 \\
        --users 4000 --out /tmp/ab --profile tiny
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from distillery.config import Config
from distillery.stages._io import write_metrics
from distillery.stages.data import DatasetLike, open_dataset

if TYPE_CHECKING:
    from distillery.abtest.experiment import ExperimentResult
    from distillery.abtest.rankers import Ranker
    from distillery.abtest.simulator import QueryGroup

REFERENCE_RANKERS = ("oracle", "random", "worst")
"""Arms that are not models (in process only): perfect, random and inverted rankings by the true grades."""


def search_queries(data: DatasetLike, split: str = "test") -> list[QueryGroup]:
    """The queries the simulated users search: ``split`` of ``data`` (``all``: every pair), grouped by query."""
    from distillery.abtest.simulator import build_queries

    ds = open_dataset(data)
    pairs = ds.all_pairs() if split == "all" else ds.part(split)
    return build_queries(pairs, ds.name if split == "all" else f"{split}.jsonl")


def abtest(cfg: Config, champion: str, challenger: str | Path, data: DatasetLike, out_dir: str | Path, *,
           users: int, split: str = "test", weights: tuple[float, float] = (50.0, 50.0), in_process: bool = False,
           added_delay_ms: float = 0.0, progress: bool = True, context: dict[str, Any] | None = None
           ) -> dict[str, Any]:
    """Run the experiment on :func:`search_queries` of ``data`` with at most ``users`` simulated users and
    ``weights`` (champion, challenger percentages); the gate may stop it sooner.  ``champion``/``challenger``
    are model directories or ``s3://`` URIs (in process also a reference ranker); ``added_delay_ms`` slows the
    in-process challenger (the latency guardrail).  Returns the metrics: decision, reasons, users, SRM p."""
    out = Path(out_dir)
    arms = {"champion": str(champion), "challenger": str(challenger)}
    if not in_process and set(arms.values()) & set(REFERENCE_RANKERS):
        raise ValueError("oracle/random/worst exist only with --in-process; give model directories for Triton")
    queries = search_queries(data, split)
    if progress:
        print(f"{len(queries)} queries to search")
    local = {role: arm if arm in REFERENCE_RANKERS else _fetch(arm, out) for role, arm in arms.items()}
    if in_process:
        from distillery.abtest.report import write_report

        result = _in_process(cfg, local, queries, users, weights, added_delay_ms, progress)
        ctx = {**arms, "users simulated": result.users, "looks (gate checks)": result.looks,
               "served": "in process (no Triton)", **(context or {})}
        write_report(out, result.decision, result.history, cfg.abtest.primary_metric, "A/B experiment", ctx)
    else:
        from distillery.abtest.local import run_local

        result = run_local(local["champion"], local["challenger"], queries, users, weights, out, cfg.abtest,
                           progress=progress, context=context).result
    d = result.decision
    metrics = {"decision": d.decision, "challenger": d.challenger, "reasons": list(d.reasons), "users": d.users,
               "srm_p": d.srm_p}
    write_metrics(metrics, out)
    return metrics


def _fetch(arm: str, out: Path) -> str:
    """A local directory of a model given as a directory or an ``s3://`` URI."""
    from distillery.storage import fetch

    return str(fetch(arm, out / ".cache"))


def _ranker(spec: str, queries: list[QueryGroup], batch_size: int) -> Ranker:
    from distillery.abtest import rankers

    named: dict[str, Ranker] = {"oracle": rankers.OracleRanker(), "random": rankers.RandomRanker(),
                                "worst": rankers.WorstRanker()}
    if spec in named:
        return named[spec]
    return rankers.model_ranker(spec, queries, batch_size)


def _in_process(cfg: Config, arms: dict[str, str], queries: list[QueryGroup], users: int,
                weights: tuple[float, float], added_delay_ms: float, progress: bool) -> ExperimentResult:
    from distillery.abtest.arms import Router
    from distillery.abtest.experiment import InProcessArm, in_process_server, run_experiment
    from distillery.abtest.gate import Gate
    from distillery.abtest.local import two_arm_split
    from distillery.abtest.simulator import SimConfig

    ab = cfg.abtest
    split = two_arm_split(weights, ab.request_timeout_s)
    batch = cfg.train.eval_batch_size
    served = {"champion": InProcessArm(_ranker(arms["champion"], queries, batch)),
              "challenger": InProcessArm(_ranker(arms["challenger"], queries, batch), added_delay_ms=added_delay_ms)}
    sim = SimConfig(users_per_batch=ab.users_per_batch, sessions_per_user=ab.sessions_per_user, shown=ab.shown,
                    seed=ab.seed)
    return run_experiment(queries, in_process_server(queries, Router(split), served),
                          Gate(ab, split.champion, split.weights), sim, users, progress=progress)

