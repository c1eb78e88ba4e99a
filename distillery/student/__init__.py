"""The BERT student: model, shared training loop, plain fine-tuning, the lexical floor, loading."""
