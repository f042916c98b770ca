"""Operating a deployed release through the Kubernetes API (the ``fashion-classifier cluster`` commands).

One module per job: ``connect`` (client, credentials, error translation), ``release`` (the Helm
release record), ``training`` (a training Job from the release's own template), ``follow``
(following a Job and its logs), ``status``, ``scaling`` and ``rollout``; ``waiting`` polls.

The official ``kubernetes`` client (the ``cluster`` extra) is imported lazily, only by ``connect``:
the serving image is built without it and must still import this package.
"""
