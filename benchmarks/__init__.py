"""rxlens against the vendor SDK and the Python SSE clients, side by side in one run.

``python -m benchmarks [--quick] [--out DIR]``; see ``benchmarks/__main__.py``.
"""
