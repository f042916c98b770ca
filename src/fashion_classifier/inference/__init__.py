"""Inference without TensorFlow: image preprocessing, the LiteRT predictor, hot reload.

Nothing in this package imports TensorFlow; serving workers import only this, NumPy, Pillow
and ``ai_edge_litert``.
"""
