"""Online A/B evaluation: the traffic splitter, simulated users and the promotion gate.

- :mod:`arms` — splits as declared data, sticky 10,000-bucket hashing, minimal-movement rebalancing;
- :mod:`splitter` — the async HTTP service in front of Triton (``serving/splitter/main.py`` runs it);
- :mod:`simulator` — users with a position-biased cascade click model over known true grades;
- :mod:`stats`, :mod:`gate` — SRM, mSPRT always-valid p-values / confidence sequences, guardrails;
- :mod:`experiment`, :mod:`local` — batch loop in process, or end to end with Triton on loopback.
"""
