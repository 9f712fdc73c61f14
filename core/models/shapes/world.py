"""The shapes world: what its prompts can say, how a scene is drawn, and how a picture is
read back (colours and position), so that training, tests and the quality script agree on
one definition of "the prompt was obeyed".

Pillow and numpy only: nothing here imports torch.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw

if TYPE_CHECKING:
    import numpy as np

SIZE = 64  # pixels, square
# Flat colours far enough apart that the nearest palette entry of a generated pixel names
# the colour a person would.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (255, 140, 0),
    "yellow": (250, 220, 20),
    "green": (30, 160, 50),
    "cyan": (0, 200, 220),
    "blue": (30, 60, 220),
    "purple": (130, 40, 180),
    "pink": (255, 130, 200),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "gray": (128, 128, 128),
    "brown": (120, 70, 30),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "ring")
# Where a shape's centre sits, in pixels of the 64x64 canvas.
POSITIONS: dict[str, tuple[int, int]] = {
    "top left": (16, 16),
    "top right": (48, 16),
    "bottom left": (16, 48),
    "bottom right": (48, 48),
    "centre": (32, 32),
}
# Radius ranges in pixels; a large shape still fits inside its quadrant.
SIZES: dict[str, tuple[int, int]] = {"small": (7, 10), "large": (12, 15)}
JITTER = 3  # pixels a shape's centre may move from its position
# How often a training prompt leaves a part out (then chance decides it): a short prompt
# such as "a yellow star", which inpainting uses, must mean something too.
LEFT_OUT: dict[str, float] = {"size": 0.5, "background": 0.25, "position": 0.25}
# Every word the prompts use; the tokenizer gives each one a token of its own.
WORDS: tuple[str, ...] = (
    "a", "an", "on", "background", "center", "top", "bottom", "left", "right",
    *COLOURS, *SHAPES, *SIZES, *(word for place in POSITIONS for word in place.split()),
)


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    background: str
    position: str
    size: str
    # The exact centre and radius drawn (jittered within the position and size).
    centre: tuple[int, int]
    radius: int

    def prompt(self, *, with_size: bool = True, with_background: bool = True,
               with_position: bool = True) -> str:
        """The scene in words, e.g. "a small red circle on a blue background, top left";
        parts left out are left to chance when the model draws the prompt."""
        words = f"a {self.size + ' ' if with_size else ''}{self.colour} {self.shape}"
        if with_background:
            words += f" on a {self.background} background"
        if with_position:
            words += f", {self.position}"
        return words


def random_scene(rng: random.Random) -> Scene:
    colour, background = rng.sample(sorted(COLOURS), 2)
    position = rng.choice(sorted(POSITIONS))
    size = rng.choice(sorted(SIZES))
    x, y = POSITIONS[position]
    return Scene(
        shape=rng.choice(SHAPES), colour=colour, background=background, position=position,
        size=size,
        centre=(x + rng.randint(-JITTER, JITTER), y + rng.randint(-JITTER, JITTER)),
        radius=rng.randint(*SIZES[size]),
    )


def training_prompt(scene: Scene, rng: random.Random) -> str:
    """A prompt for `scene` as training shows it: parts left out as often as LEFT_OUT
    says, and "center" as often as "centre"."""
    text = scene.prompt(with_size=rng.random() >= LEFT_OUT["size"],
                        with_background=rng.random() >= LEFT_OUT["background"],
                        with_position=rng.random() >= LEFT_OUT["position"])
    if rng.random() < 0.5:
        text = text.replace("centre", "center")
    return text


_SUPERSAMPLE = 4  # draw large and shrink, for smooth edges


def render(scene: Scene) -> Image.Image:
    """The scene as a 64x64 RGB picture."""
    return _draw(scene, "RGB", COLOURS[scene.colour], COLOURS[scene.background])


def silhouette(scene: Scene) -> Image.Image:
    """Where the scene's shape lies: a 64x64 greyscale picture, 255 on the shape (edges
    partly), 0 elsewhere (a ring's hole too)."""
    return _draw(scene, "L", 255, 0)


def _draw(scene: Scene, mode: str, fill: int | tuple[int, int, int],
          background: int | tuple[int, int, int]) -> Image.Image:
    scale = _SUPERSAMPLE
    canvas = Image.new(mode, (SIZE * scale, SIZE * scale), background)
    draw = ImageDraw.Draw(canvas)
    x, y, r = scene.centre[0] * scale, scene.centre[1] * scale, scene.radius * scale
    box = (x - r, y - r, x + r, y + r)
    if scene.shape == "circle":
        draw.ellipse(box, fill=fill)
    elif scene.shape == "ring":
        draw.ellipse(box, fill=fill)
        inner = r * 0.55
        draw.ellipse((x - inner, y - inner, x + inner, y + inner), fill=background)
    elif scene.shape == "square":
        side = r * 0.85  # the same area to the eye as a circle of radius r
        draw.rectangle((x - side, y - side, x + side, y + side), fill=fill)
    elif scene.shape == "triangle":
        draw.polygon(_star_points(x, y + r * 0.15, r * 1.1, r * 1.1, 3), fill=fill)
    elif scene.shape == "star":
        draw.polygon(_star_points(x, y, r * 1.1, r * 0.5, 5), fill=fill)
    else:
        raise ValueError(f"unknown shape {scene.shape!r}")
    return canvas.resize((SIZE, SIZE), Image.Resampling.BOX)


def _star_points(x: float, y: float, outer: float, inner: float,
                 tips: int) -> list[tuple[float, float]]:
    """A regular star (or, with inner == outer, polygon) with a tip pointing up."""
    points = []
    corners = tips if inner == outer else tips * 2
    for n in range(corners):
        radius = outer if n % 2 == 0 or inner == outer else inner
        angle = -math.pi / 2 + n * 2 * math.pi / corners
        points.append((x + radius * math.cos(angle), y + radius * math.sin(angle)))
    return points


# Reading a picture back ---------------------------------------------------------------

_NAMES = sorted(COLOURS)


def colour_classes(image: Image.Image) -> np.ndarray:
    """Per pixel, the index into sorted(COLOURS) of the nearest palette colour."""
    import numpy as np

    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    palette = np.array([COLOURS[name] for name in _NAMES], dtype=np.float32)
    distances = ((pixels[:, :, None, :] - palette[None, None]) ** 2).sum(axis=-1)
    return distances.argmin(axis=-1)


def colour_name(index: int) -> str:
    return _NAMES[index]


@dataclass(frozen=True)
class Reading:
    """What a picture shows, read the same way for every picture: the background is the
    commonest colour along the border, the shape is every pixel of another colour, its
    colour the commonest among them and its place the centroid of that colour."""
    background: str
    colour: str | None
    centre: tuple[float, float] | None
    shape_pixels: int

    @property
    def position(self) -> str | None:
        """The nearest of POSITIONS to the shape's centroid."""
        if self.centre is None:
            return None
        cx, cy = self.centre
        return min(POSITIONS, key=lambda name: (POSITIONS[name][0] - cx) ** 2
                   + (POSITIONS[name][1] - cy) ** 2)


def read(image: Image.Image, min_shape_pixels: int = 12) -> Reading:
    import numpy as np

    classes = colour_classes(image)
    border = np.concatenate([classes[0], classes[-1], classes[:, 0], classes[:, -1]])
    background = int(np.bincount(border, minlength=len(_NAMES)).argmax())
    counts = np.bincount(classes[classes != background].ravel(), minlength=len(_NAMES))
    if counts.sum() < min_shape_pixels:
        return Reading(colour_name(background), None, None, int(counts.sum()))
    colour = int(counts.argmax())
    ys, xs = np.nonzero(classes == colour)
    return Reading(colour_name(background), colour_name(colour),
                   (float(xs.mean()) + 0.5, float(ys.mean()) + 0.5), int(counts.sum()))


def share_of(image: Image.Image, colour: str, mask: Image.Image | None = None) -> float:
    """The fraction of the pixels (inside `mask`, where it is at least 128) whose nearest
    palette colour is `colour`."""
    import numpy as np

    classes = colour_classes(image)
    selected = (np.ones(classes.shape, dtype=bool) if mask is None
                else np.asarray(mask.convert("L")) >= 128)
    return float((classes[selected] == _NAMES.index(colour)).mean())
