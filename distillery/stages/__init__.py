"""One module per stage: the one implementation that a CLI command and a KFP component both call.

Each stage function takes a typed :class:`distillery.config.Config`, its input locations and an output
location, writes its own ``metrics.json`` / ``report.md`` once, and returns its metrics.  The data is split
by query once (:mod:`~distillery.stages.data`); every later stage reads the split it is given.

- :mod:`~distillery.stages.data`: load a data spec, split it once, write the split files (``Dataset``)
- :mod:`~distillery.stages.teacher`: teacher DAPT → SFT → reward model → DPO, and the teacher's evaluation
- :mod:`~distillery.stages.annotate`: one annotation shard with the teacher, and the merge of the shards
- :mod:`~distillery.stages.finetune`: the student fine-tuned on human labels (the baseline), or the lexical floor
- :mod:`~distillery.stages.distill`: the student distilled from the annotations (:mod:`distillery.student.methods`)
- :mod:`~distillery.stages.evaluate`: a saved student on the held-out split (or every row of a spec)
- :mod:`~distillery.stages.export`: ONNX export behind the parity gate into a Triton model repository
- :mod:`~distillery.stages.deploy`: copy a repository to where Triton serves it; run Triton on it
- :mod:`~distillery.stages.abtest`: champion vs challenger behind the splitter, simulated users, the gate
- :mod:`~distillery.stages._io`: what they share (config JSON, pair files, metrics, reports, publishing)
"""
