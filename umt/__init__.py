"""UMT: Unified Music Translation between score images, MusicXML (LMX), MIDI and audio.

Importing ``umt`` stays light: heavy or optional packages (torch models, music21, verovio, wandb,
pypdfium2) are imported inside the modules and functions that use them.
"""

__version__ = "0.1.0"
