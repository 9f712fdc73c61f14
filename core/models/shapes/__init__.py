"""The shapes model: a small Stable-Diffusion-shaped pipeline trained here on a synthetic
world of flat shapes, so that a prompt such as "a red circle on a blue background, top
left" draws that. `world` defines the world, `tokenizer` its vocabulary, `train` the
training; the trained weights ship in `weights/` (see its README.md, the model card).
"""

from pathlib import Path

NAME = "shapes"
# The shipped weights' training budget, in minutes on two idle CPU cores.
DEFAULT_MINUTES = 28.0
# The shipped diffusers folder, package data of strata.core.models.shapes.
SHIPPED = Path(__file__).resolve().parent / "weights"
