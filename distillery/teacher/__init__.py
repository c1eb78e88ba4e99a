"""The teacher LLM: model loading and LoRA, the answer format, DAPT, rationales, SFT, reward model, DPO, inference.

CPU commands (tiny profile, seconds each)::

    distillery teacher dapt --data synthetic:300 --out /tmp/t/dapt --profile tiny
    distillery teacher sft --data synthetic:300 --base /tmp/t/dapt --out /tmp/t/sft --profile tiny
    distillery teacher reward --data synthetic:300 --base /tmp/t/sft --out /tmp/t/reward --profile tiny
    distillery teacher dpo --data synthetic:300 --base /tmp/t/sft --reward /tmp/t/reward --out /tmp/t/dpo --profile tiny
    distillery teacher evaluate --model /tmp/t/dpo --data synthetic:100 --out /tmp/t/eval.json --profile tiny
"""
