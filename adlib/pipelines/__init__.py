"""Experiment pipelines, one module per model notebook (load data, train, evaluate, write results)."""
