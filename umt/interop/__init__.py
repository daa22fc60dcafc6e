"""Other codebases' artifacts as UMT ones: :mod:`umt.interop.umust` imports U-MusT's run folders."""
