"""Versioned model store (``store``, no TensorFlow) and the TFLite export (``export``, TensorFlow)."""
