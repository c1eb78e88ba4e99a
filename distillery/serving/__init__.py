"""Serving the student on NVIDIA Triton: a server launcher, a client, and the code Triton's python
backend runs (request parsing, tokenising, onnxruntime inference).

``preprocess`` and ``runtime`` import only numpy, ``tokenizers`` and ``onnxruntime``: they run inside
Triton's python-backend stub, whose environment holds nothing else (see ``stubenv``).  Importing this
package imports nothing heavy.
"""
