"""Experiments on how self-training goes wrong: model collapse under four data policies,
and poisoning of the self-improvement loop and of preference data."""
