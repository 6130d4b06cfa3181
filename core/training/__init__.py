"""Model assembly, freezing, optimisation and the training loop."""
