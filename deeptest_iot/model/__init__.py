"""The model under test: loading, model cards, backends and the one-pass run of outputs and activations."""
