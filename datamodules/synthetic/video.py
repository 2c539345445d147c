"""The synthetic world in motion: a scene of ``datamodules.synthetic.world`` moving over T frames.

``render_video`` samples a video once from a numpy ``Generator`` (deterministic per seed) as a list of
per-frame ``world.Scene`` objects -- image, stuff map, visible things with their ids -- so every format
writer (``datamodules.synthetic.youtube_vis_writer``; video panoptic layouts later) sees the same world.
The motion model, with frames t = 0..T-1:

- things: the middle frame's layout is sampled as a still scene's (``world.sample_things``, with its
  occlusion limit); each thing then moves rigidly -- constant velocity, angular velocity and scale factor
  per frame (``Track.shape_at``) -- so it may enter or leave the frame, and passes over or under the
  others in a fixed depth order (bottom to top). Its ``instance_id`` (1, 2, ... in sampling order) is the
  same in every frame;
- stuff: the camera pans slowly over a larger static stuff canvas (``world.render_stuff``) at a constant
  velocity; the window's offset is rounded to whole pixels per frame (``Video.pan_offsets``), so stuff
  pixels move by whole pixels and stay crisp;
- per frame, visible masks are computed top-down as ``world.paint_things`` does, but a thing is shown
  (painted, annotated, occluding) when its visible part has at least ``min_visible_pixels`` pixels and
  spans at least ``min_visible_extent`` pixels in x and in y -- no visible fraction, so a thing entering
  the frame shows from its first few pixels on, and its box is never degenerate (readers skip boxes of
  1 pixel or less, ``coco_instances.MIN_BOX_SIZE``).

``frame_flow`` is the ground-truth optical flow of frame t -> t + 1: per pixel, where the surface point
seen at its centre is in frame t + 1 -- the shown thing's rigid motion on its pixels, the pan elsewhere --
whether or not that point is visible (or in the frame) at t + 1. Coordinates follow
``datamodules.synthetic.render`` (pixel (x, y) covers [x, x + 1) x [y, y + 1)).
"""

from dataclasses import dataclass, field

import numpy as np

from datamodules.synthetic.world import Scene, SceneConfig, Shape, Thing, render_stuff, sample_things


@dataclass(frozen=True)
class VideoConfig:
    """How videos are sampled. Speeds are per frame, as fractions of the image size (things) or, for the
    camera pan, per axis; ``scene`` places the middle frame's things (its crowd and visibility fields are
    not used: videos have no crowd regions, and ``min_visible_*`` below decide visibility)."""

    num_frames: int = 8
    scene: SceneConfig = field(default_factory=SceneConfig)
    speed_range: tuple[float, float] = (0.0, 0.04)
    max_angular_speed: float = 0.08  # radians per frame
    max_scale_rate: float = 0.02  # |log of the size factor per frame|
    max_pan_speed: float = 0.005
    min_visible_pixels: int = 16
    min_visible_extent: int = 2


@dataclass(frozen=True)
class Track:
    """One thing over the whole video: its shape at frame 0 (``start``) and its rigid motion per frame."""

    instance_id: int
    start: Shape
    velocity: tuple[float, float]  # pixels per frame (x, y)
    angular_velocity: float  # radians per frame (clockwise on screen)
    scale_rate: float  # log of the size factor per frame

    def shape_at(self, t: float) -> Shape:
        """The shape at frame ``t``."""
        s = self.start
        center = (s.center[0] + self.velocity[0] * t, s.center[1] + self.velocity[1] * t)
        size = s.size * float(np.exp(self.scale_rate * t))
        return Shape(s.thing_class, center, size, s.angle + self.angular_velocity * t, s.colour)


@dataclass(eq=False)  # holds arrays: compare by identity
class Video:
    """A rendered video: one ``Scene`` per frame (``things`` = the things shown in it, bottom to top,
    each with its frame's shape and visible mask), every thing's ``Track`` (bottom to top, shown or not),
    and ``pan_offsets`` (T, 2) int64: the (x, y) of each frame's top-left corner on the stuff canvas."""

    frames: list[Scene]
    tracks: list[Track]
    pan_offsets: np.ndarray

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def image_size(self) -> int:
        return self.frames[0].image.shape[0]


def _shown(visible: np.ndarray, config: VideoConfig) -> bool:
    if visible.sum() < config.min_visible_pixels:
        return False
    columns, rows = np.flatnonzero(visible.any(axis=0)), np.flatnonzero(visible.any(axis=1))
    extent = min(columns[-1] - columns[0], rows[-1] - rows[0]) + 1
    return extent >= config.min_visible_extent


def paint_frame(
    background: np.ndarray, layers: list[tuple[int, Shape]], config: VideoConfig
) -> tuple[np.ndarray, list[Thing]]:
    """Paint ``(instance id, shape)`` layers (bottom to top) over ``background``; return the image and the
    shown things (visible masks computed top-down; a thing not shown neither occludes nor is painted)."""
    image_size = background.shape[0]
    covered = np.zeros(background.shape[:2], bool)
    shown: list[Thing] = []
    for instance_id, shape in reversed(layers):
        full = shape.full_mask(image_size)
        visible = full & ~covered
        if _shown(visible, config):
            covered |= full
            shown.append(Thing(instance_id, (shape,), visible))
    shown.reverse()
    image = background.copy()
    for thing in shown:
        image[thing.mask] = thing.shape.colour
    return image, shown


def sample_tracks(
    rng: np.random.Generator, image_size: int, config: VideoConfig, middle: float
) -> list[Track]:
    """The things of a video, bottom to top: the layout of frame ``middle`` and a random rigid motion each."""
    tracks = []
    for index, shape in enumerate(sample_things(rng, image_size, config.scene)):
        speed = rng.uniform(*config.speed_range) * image_size
        direction = rng.uniform(0.0, 2 * np.pi)
        velocity = (speed * np.cos(direction), speed * np.sin(direction))
        angular = float(rng.uniform(-config.max_angular_speed, config.max_angular_speed))
        rate = float(rng.uniform(-config.max_scale_rate, config.max_scale_rate))
        start = Shape(
            shape.thing_class,
            (shape.center[0] - velocity[0] * middle, shape.center[1] - velocity[1] * middle),
            shape.size * float(np.exp(-rate * middle)),
            shape.angle - angular * middle,
            shape.colour,
        )
        tracks.append(Track(index + 1, start, (float(velocity[0]), float(velocity[1])), angular, rate))
    return tracks


def render_video(rng: np.random.Generator, image_size: int, config: VideoConfig | None = None) -> Video:
    """Sample and render one video of ``config.num_frames`` frames (the motion model of the module
    docstring)."""
    config = config or VideoConfig()
    if config.num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {config.num_frames}")
    middle = (config.num_frames - 1) / 2
    max_shift = config.max_pan_speed * image_size * middle
    margin = int(np.ceil(max_shift)) + 1
    canvas, canvas_stuff = render_stuff(rng, image_size + 2 * margin)
    pan = rng.uniform(-config.max_pan_speed, config.max_pan_speed, size=2) * image_size
    times = np.arange(config.num_frames) - middle
    pan_offsets = margin + np.round(times[:, None] * pan[None]).astype(np.int64)
    tracks = sample_tracks(rng, image_size, config, middle)
    frames = []
    for t, (x, y) in enumerate(pan_offsets.tolist()):
        window = np.s_[y : y + image_size, x : x + image_size]
        layers = [(track.instance_id, track.shape_at(t)) for track in tracks]
        image, things = paint_frame(canvas[window], layers, config)
        frames.append(Scene(image, canvas_stuff[window].copy(), things))
    return Video(frames, tracks, pan_offsets)


def frame_flow(video: Video, t: int) -> np.ndarray:
    """Ground-truth flow (H, W, 2) float32 of frame ``t`` -> ``t + 1`` (module docstring)."""
    if not 0 <= t < video.num_frames - 1:
        raise ValueError(f"flow runs from frame 0 to {video.num_frames - 2}, got frame {t}")
    size = video.image_size
    pan_step = video.pan_offsets[t] - video.pan_offsets[t + 1]
    flow = np.empty((size, size, 2), np.float32)
    flow[...] = pan_step.astype(np.float32)
    tracks = {track.instance_id: track for track in video.tracks}
    for thing in video.frames[t].things:
        rows, columns = np.nonzero(thing.mask)
        centres = np.stack([columns, rows], axis=1) + 0.5
        moved = tracks[thing.instance_id].shape_at(t + 1).to_image(thing.shape.to_local(centres))
        flow[rows, columns] = moved - centres
    return flow
