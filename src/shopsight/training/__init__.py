"""Training infrastructure shared by the torch models: the loop and distributed helpers."""
