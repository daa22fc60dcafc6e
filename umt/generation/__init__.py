"""Decoding pieces that are not the network: logit filters (:mod:`umt.generation.filters`)."""
