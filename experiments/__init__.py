"""Toy transformer runs on a Markov language with a known spectrum."""
