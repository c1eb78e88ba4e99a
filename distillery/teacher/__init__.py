"""The teacher LLM: model loading and LoRA, the answer format, DAPT, rationales, SFT, reward model, DPO, inference.

The stage that runs these steps, with its CPU commands (tiny profile, seconds each), is
:mod:`distillery.stages.teacher`.
"""
