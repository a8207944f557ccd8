"""The data layer: training records, dataset builders, JSONL, preflight, tokens and prices.

Nothing in this package talks to a network.
"""
