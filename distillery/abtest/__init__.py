"""Online A/B evaluation: the traffic splitter, simulated users and the promotion gate.

- :mod:`arms` — splits as declared data, sticky 10,000-bucket hashing, minimal-movement rebalancing;
- :mod:`splitter` — the async HTTP service in front of Triton (``distillery.abtest.splitter_main`` runs it);
- :mod:`simulator` — users with a position-biased cascade click model over known true grades;
- :mod:`metrics` — per-user totals (``UserTable``): what the simulator and a production log produce, the gate's input;
- :mod:`stats`, :mod:`gate` — SRM, mSPRT always-valid p-values / confidence sequences, guardrails;
- :mod:`experiment`, :mod:`local` — batch loop in process, or end to end with Triton on loopback.
"""
