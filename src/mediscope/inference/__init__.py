"""Inference: prediction files and ensembles."""
