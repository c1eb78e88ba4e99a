"""Relevance Distillery: distil a reasoning LLM into a fast BERT relevance model, and ship it."""

__version__ = "0.1.0"
