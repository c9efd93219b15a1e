"""Plots and tables written into run folders."""
