"""The top-down affine crop: the box's centre and size, the matrix, and that image and keypoints stay
aligned when warped (OpenCV's pixel-centre convention converted)."""

import numpy as np
import pytest

from datamodules.top_down_crop import (
    box_center_size,
    invert_affine,
    top_down_affine,
    transform_boxes,
    transform_points,
    warp_image,
)


def test_box_center_size_fixes_the_aspect_ratio_then_pads() -> None:
    center, size = box_center_size([10, 20, 30, 100], aspect_ratio=0.75, padding=1.25)  # 20 x 80 box
    assert center.tolist() == [20, 60]
    assert size.tolist() == pytest.approx([60 * 1.25, 80 * 1.25])  # widened to 3:4, then padded
    _, size = box_center_size([0, 0, 100, 10], aspect_ratio=1.0, padding=1.0)
    assert size.tolist() == [100, 100]


@pytest.mark.parametrize("box", [[5, 5, 5, 20], [5, 5, 20, 5], [5, 5, 4, 20], [0, 0, np.nan, 3]])
def test_a_box_without_area_raises(box: list[float]) -> None:
    with pytest.raises(ValueError, match="has no area"):
        box_center_size(box, aspect_ratio=1.0)


def test_matrix_maps_the_box_centre_to_the_crop_centre_and_inverts() -> None:
    matrix = top_down_affine([40.0, 30.0], [20.0, 40.0], (64, 128), rotation_degrees=25.0, flip=True)
    assert matrix.shape == (2, 3) and matrix.dtype == np.float64
    assert transform_points([40.0, 30.0], matrix).tolist() == pytest.approx([32, 64])
    points = np.random.default_rng(0).uniform(0, 100, size=(7, 2))
    back = transform_points(transform_points(points, matrix), invert_affine(matrix))
    np.testing.assert_allclose(back, points, atol=1e-9)


def test_rotation_turns_content_counter_clockwise_and_flip_mirrors_the_crop() -> None:
    center, size, out = [50.0, 50.0], [20.0, 20.0], (20, 20)
    above = [50.0, 45.0]  # 5 px above the centre
    rotated = transform_points(above, top_down_affine(center, size, out, rotation_degrees=90.0))
    assert rotated.tolist() == pytest.approx([5.0, 10.0])  # counter-clockwise: now left of the centre
    left = [45.0, 50.0]
    assert transform_points(left, top_down_affine(center, size, out)).tolist() == pytest.approx([5, 10])
    flipped = transform_points(left, top_down_affine(center, size, out, flip=True))
    assert flipped.tolist() == pytest.approx([15, 10])  # x -> W - x in the crop


def test_boxes_are_bounded_by_their_moved_corners() -> None:
    matrix = top_down_affine([50.0, 50.0], [40.0, 40.0], (80, 80), flip=True)
    assert transform_boxes(np.array([[40.0, 45.0, 60.0, 50.0]]), matrix).tolist() == [[20, 30, 60, 40]]


def test_unit_scale_crop_is_a_slice_and_half_scale_is_the_2x2_block_mean() -> None:
    image = np.random.default_rng(1).uniform(0, 1, size=(60, 80)).astype(np.float32)
    matrix = top_down_affine([50.0, 40.0], [32.0, 24.0], (32, 24))  # a pure integer translation
    np.testing.assert_array_equal(warp_image(image, matrix, (32, 24)), image[28:52, 34:66])
    # scale 1/2: crop pixel q covers source pixels 2q and 2q + 1, sampled at their shared edge
    matrix = top_down_affine([40.0, 30.0], [80.0, 60.0], (40, 30))
    blocks = image.reshape(30, 2, 40, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(warp_image(image, matrix, (40, 30)), blocks, atol=1e-6)


def disc_coverage(shape: tuple[int, int], center: tuple[float, float], radius: float) -> np.ndarray:
    """A disc's coverage of each pixel (16 x 16 samples per pixel, pixel i covering [i, i + 1))."""
    height, width = shape
    offsets = (np.arange(16) + 0.5) / 16
    xs = (np.arange(width)[:, None] + offsets).reshape(-1)
    ys = (np.arange(height)[:, None] + offsets).reshape(-1)
    inside = (xs[None, :] - center[0]) ** 2 + (ys[:, None] - center[1]) ** 2 <= radius**2
    return inside.reshape(height, 16, width, 16).mean(axis=(1, 3)).astype(np.float32)


def centroid(image: np.ndarray) -> np.ndarray:
    rows, columns = np.indices(image.shape)
    return np.array([(image * (columns + 0.5)).sum(), (image * (rows + 0.5)).sum()]) / image.sum()


def test_a_warped_disc_lands_on_its_transformed_keypoint() -> None:
    keypoint = (63.37, 48.81)
    image = disc_coverage((100, 140), keypoint, radius=4.0)
    assert np.abs(centroid(image) - keypoint).max() < 0.01
    matrix = top_down_affine([60.2, 52.9], [40.0, 53.3], (72, 96), rotation_degrees=37.0, flip=True)
    crop = warp_image(image, matrix, (72, 96))
    expected = transform_points(np.array(keypoint), matrix)
    error = np.abs(centroid(crop) - expected).max()
    assert error < 0.05, f"disc centroid {centroid(crop)} vs keypoint {expected}"
    # without the pixel-centre conversion the disc would sit visibly off its keypoint
    import cv2

    naive = cv2.warpAffine(image, matrix, (72, 96), flags=cv2.INTER_LINEAR)
    assert np.abs(centroid(naive) - expected).max() > 0.3
