"""The shape of one image's features, defined once for the whole project.

The paper's visual input (section 2.2) is the last convolutional block of a ResNet-152 for a
224 x 224 image: a 7 x 7 grid of 2048-d vectors, read as a sequence of 49 blocks. The cache
stores it as (7, 7, 2048); models read it as (49, 2048). No heavy imports here: the model
config and the command line read these constants too.
"""

GRID = 7  # blocks per side
CHANNELS = 2048  # feature width of a block
BLOCKS = GRID * GRID  # 49 blocks per image, raster order
