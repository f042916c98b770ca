"""fashion-classifier: Fashion-MNIST training, LiteRT serving and a Cassandra prediction log."""

__version__ = "0.1.0"
