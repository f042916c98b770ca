"""Helpers that run real components for the serving tests and the benchmark.

``server`` starts ``fashion-classifier serve`` (or any command) on a free port and waits for
readiness; ``prometheus`` runs a real Prometheus server; ``browser`` drives headless Chromium;
``images`` turns Fashion-MNIST test images into upload files. Nothing here mocks a component:
a component that cannot start raises, and the test using it fails.

Importable as ``harness`` because pytest puts ``tests/`` (home of the top-level conftest) on
``sys.path``; ``bench/serving.py`` adds it itself.
"""
