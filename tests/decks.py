"""Small decks shared by the reader, bad-input and fuzz tests."""

# the nodes of two unit hexes side by side along x; labels non-contiguous and not sorted
TWO_HEX_NODES = """\
*NODE, NSET=NALL
101, 0, 0, 0
102, 1, 0, 0
103, 1, 1, 0
104, 0, 1, 0
105, 0, 0, 1
106, 1, 0, 1
107, 1, 1, 1
108, 0, 1, 1
112, 2, 1, 1
109, 2, 0, 0
110, 2, 1, 0
111, 2, 0, 1
"""

# two hexes fixed on the left face and pulled on the right
TWO_HEX = """\
*HEADING
two hexes, non-contiguous labels
""" + TWO_HEX_NODES + """\
*ELEMENT, TYPE=C3D8, ELSET=EALL
7, 101, 102, 103, 104, 105, 106, 107, 108
3, 102, 109, 110, 103, 106, 111, 112, 107
*NSET, NSET=LEFT
101, 104, 105, 108
*NSET, NSET=RIGHT
109, 110, 111, 112
*MATERIAL, NAME=BONE
*ELASTIC
1000., 0.3
*SOLID SECTION, ELSET=EALL, MATERIAL=BONE
*STEP
*STATIC
*BOUNDARY
LEFT, ENCASTRE
*CLOAD
RIGHT, 1, 2.5
*END STEP
"""
