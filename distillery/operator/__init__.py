"""The Kubernetes operator: ``DistillationRun`` and ``RelevanceExperiment`` custom resources.

Everything here but ``handlers.py`` is pure logic (no kopf, no kfp, no Kubernetes client): spec
validation (:mod:`.spec`), rendering of what the operator writes (:mod:`.render`), status and
conditions (:mod:`.status`), and the traffic-stepping state machine (:mod:`.rollout`).
``handlers.py`` is the thin kopf adapter, started with

    kopf run --standalone --namespace=relevance-distillery -m pipelines.operator

(``pipelines/operator.py`` imports the handlers and injects the KFP backend of ``pipelines/kfp_backend.py``.)
"""
