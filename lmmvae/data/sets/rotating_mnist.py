"""Rotating MNIST (paper 7.2 and appendix F; docs/data_format.md).

Each instance is one real MNIST '3' rotated through ``n_angles`` angles spaced uniformly in
[0, 2 pi); the first angle (0) is the source image itself.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from lmmvae.data.h5 import Covariate, LongitudinalData
from lmmvae.data.sets._common import check_fraction, check_positive_int, generator_attrs, streams
from lmmvae.data.sets.generators import Generator, Option, common_options, register_generator
from lmmvae.data.sets.mnist_source import sample_digits
from lmmvae.data.sets.splits import cyclic_window_split
from lmmvae.errors import ConfigError
from lmmvae.progress import Progress

IMAGE_SHAPE = (28, 28)
DIGIT = 3


def rotating_mnist(
    n_instances: int = 400,
    n_angles: int = 16,
    missing: float = 0.0,
    test_fraction: float = 0.1,
    test_window: int = 4,
    validation_fraction: float = 0.2,
    seed: int = 0,
    mnist_dir: str | None = None,
    progress: bool = False,
) -> LongitudinalData:
    """Generate Rotating MNIST as :class:`LongitudinalData` (rows ordered by instance, then angle).

    Covariates ``angle`` (radians) and ``id``; ``latent_truth = [cos angle, sin angle]``. Split (paper
    F.1): ``test_fraction`` of instances lose a run of ``test_window`` consecutive angles (cyclic) to
    test; all other rows are split train/validation at random, so validation and test subjects also
    appear in train. ``missing`` > 0 masks pixels independently (the paper uses none).
    """
    check_positive_int("--instances", n_instances)
    check_positive_int("--timepoints", n_angles, minimum=2)
    check_fraction("--missing", missing)
    check_fraction("--test-fraction", test_fraction)
    check_fraction("--validation-fraction", validation_fraction)
    if not 1 <= test_window < n_angles:
        raise ConfigError(f"--test-window must be in 1..{n_angles - 1} (below --timepoints), got {test_window}")
    rng_digits, rng_mask, rng_split = streams(seed, 3)
    sources, _ = sample_digits(DIGIT, n_instances, rng_digits, mnist_dir)  # [P, 28, 28]

    subject = np.repeat(np.arange(n_instances), n_angles)  # [N]
    step = np.tile(np.arange(n_angles), n_instances)  # [N]
    angle = 2.0 * np.pi * step / n_angles  # [N] radians
    y_full = _rotated(sources, subject, step, angle, progress)  # [N, 784]
    if missing > 0:
        mask = (rng_mask.random(y_full.shape) >= missing).astype(np.uint8)  # [N, 784]
    else:
        mask = np.ones(y_full.shape, dtype=np.uint8)

    split = cyclic_window_split(
        subject, step, n_angles, test_window, test_fraction, rng_split, validation_fraction=validation_fraction
    )
    covariates = {
        "angle": Covariate(angle, "continuous"),
        "id": Covariate(subject, "id", levels=list(range(n_instances))),
    }
    args = dict(
        instances=n_instances, timepoints=n_angles, missing=missing, test_fraction=test_fraction,
        test_window=test_window, validation_fraction=validation_fraction,
        mnist=None if mnist_dir is None else str(mnist_dir),
    )
    attrs = generator_attrs("rotating_mnist", __name__, seed, args)
    attrs["image_shape"] = list(IMAGE_SHAPE)
    attrs["latent_truth_names"] = ["cos_angle", "sin_angle"]
    return LongitudinalData(
        y=y_full * mask, mask=mask, split=split, covariates=covariates,
        y_full=y_full if missing > 0 else None,
        latent_truth=np.stack([np.cos(angle), np.sin(angle)], axis=1),  # [N, 2]
        attrs=attrs,
    )


def _rotated(sources: np.ndarray, subject: np.ndarray, step: np.ndarray, angle: np.ndarray,
             progress: bool) -> np.ndarray:
    """Row ``i``: instance ``subject[i]``'s digit turned by ``angle[i]`` (cubic, clipped to [0, 1]), flat."""
    y_full = np.empty((len(subject), IMAGE_SHAPE[0] * IMAGE_SHAPE[1]), dtype=np.float32)  # [N, 784]
    rows = Progress(range(len(subject)), desc="rotating-mnist images", unit="img", enabled=progress, delay=1.0)
    for i in rows:
        image = sources[subject[i]]  # [28, 28]
        if step[i]:
            image = np.clip(ndimage.rotate(image, np.degrees(angle[i]), reshape=False, order=3), 0.0, 1.0)
        y_full[i] = image.ravel()
    return y_full


def _run(args) -> LongitudinalData:
    return rotating_mnist(
        n_instances=args.instances, n_angles=args.timepoints, missing=args.missing,
        test_fraction=args.test_fraction, test_window=args.test_window,
        validation_fraction=args.validation_fraction, seed=args.seed, mnist_dir=args.mnist, progress=not args.quiet,
    )


register_generator(Generator("rotating-mnist", "Rotating MNIST (paper 7.2): 3s through a full turn", (
    *common_options(instances=400, timepoints=16, missing=0.0, test_fraction=0.1, mnist=True),
    Option(("--test-window",), "WHOLE", 4, "consecutive angles held out per test subject (default 4)"),
), _run))
