"""MusicScore (Lin, Dai and Kong, 2024): IMSLP score pages with metadata, the page classifier."""
