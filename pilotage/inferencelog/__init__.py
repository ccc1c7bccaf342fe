"""Inference logging: sampled request/answer records and ground-truth labels, written in
batches off the hot path to files, S3 or a CloudEvents collector, and read back by window.

Pure of router code: the router builds an ``Exchange`` per sampled request and hands it to
``InferenceLogger.offer``; ``LogReader`` reads a window back. See docs/inference-logging.md.
"""
