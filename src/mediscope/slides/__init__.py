"""Whole slides: pyramidal reading by resolution, tissue masks, streaming prediction.

Needs the ``wsi`` extra (``pip install 'mediscope[wsi]'``: ``tiffslide``; ``openslide``
is used for the formats tiffslide does not read when it is installed). Nothing here holds
a full-resolution slide in memory: regions are read at the pyramid level that matches
the wanted resolution, and results are written patch by patch, tile by tile.
"""
