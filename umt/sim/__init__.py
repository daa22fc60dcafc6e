"""SIM ("Score Images as a Modality"): score-MIDI pre-training on aligned score images and MIDI.

:mod:`umt.sim.items` reads the pairs, :mod:`umt.sim.bars` times and masks bars,
:mod:`umt.sim.objectives` holds the pre-training objectives, :mod:`umt.sim.evaluate` the
retrieval, masked-bar and probe figures, and :mod:`umt.sim.folder` the trained model's folder. The
model is :mod:`umt.models.sim`; training is :mod:`umt.training.sim`.
"""
