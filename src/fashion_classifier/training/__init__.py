"""Training (TensorFlow/Keras): architectures, fitting, evaluation, report plots, the pipeline.

Nothing here is imported by serving processes.
"""
