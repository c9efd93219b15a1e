"""The engine: Trainer from config, callbacks, run directories, fit / validate / test."""
