"""Health MNIST (paper 7.1 and appendix E; docs/data_format.md), following the L-VAE paper's generator.

Each instance (subject) is one real MNIST '3' (sex 0) or '6' (sex 1), padded to 36 x 36 and followed
over ``n_timepoints`` ages. Diseased instances rotate along a sigmoid in their disease age; healthy
ones stay near 5 degrees; every image shifts ``age / 10`` pixels down and right. Pixels then go
missing independently.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from lmmvae.data.h5 import Covariate, LongitudinalData
from lmmvae.data.sets._common import check_fraction, check_positive_int, generator_attrs, streams
from lmmvae.data.sets.generators import Generator, Option, common_options, register_generator
from lmmvae.data.sets.mnist_source import sample_digits
from lmmvae.data.sets.splits import withhold_late_split
from lmmvae.errors import ConfigError
from lmmvae.progress import Progress

PAD = 4
IMAGE_SHAPE = (28 + 2 * PAD, 28 + 2 * PAD)
DIGITS = (3, 6)  # sex 0, sex 1
MAX_DISEASE_ANGLE = 45.0  # degrees
HEALTHY_ANGLE = 5.0  # degrees
JITTER_SD = 2.0  # degrees
SHIFT_PER_AGE = 0.1  # pixels per unit of age


def disease_onset(n_timepoints: int) -> int:
    """Age at which ``diseaseAge`` is 0: 9 for the paper's 20 time points (diseaseAge -9..10), and
    the same place, just before the middle of the series, for other lengths."""
    return n_timepoints // 2 - 1


def rotation_angles(disease_age: np.ndarray, diseased: np.ndarray, jitter: np.ndarray) -> np.ndarray:
    """Rotation in degrees: ``jitter + 45 * sigmoid(diseaseAge)`` if diseased, else ``jitter + 5``."""
    sick = MAX_DISEASE_ANGLE / (1.0 + np.exp(-disease_age))
    return jitter + np.where(diseased, sick, HEALTHY_ANGLE)


def transform(image: np.ndarray, angle: float, shift: float) -> np.ndarray:
    """Rotate by ``angle`` degrees, then shift ``shift`` pixels down and right; cubic splines, clip."""
    out = ndimage.rotate(image, angle, reshape=False, order=3)
    out = ndimage.shift(out, (shift, shift), order=3)
    return np.clip(out, 0.0, 1.0)


def _check(n_instances, n_timepoints, missing, test_fraction, validation_fraction, train_timepoints) -> None:
    """One-line errors naming the command-line option at fault."""
    check_positive_int("--instances", n_instances, minimum=2)
    check_positive_int("--timepoints", n_timepoints, minimum=2)
    check_fraction("--missing", missing)
    check_fraction("--test-fraction", test_fraction)
    check_fraction("--validation-fraction", validation_fraction)
    if not 1 <= train_timepoints < n_timepoints:
        raise ConfigError(
            f"--train-timepoints must be in 1..{n_timepoints - 1} (below --timepoints), got {train_timepoints}"
        )


def _instances(n_instances: int, rng_digits, rng_design, mnist_dir):
    """Half '3' (sex 0), half '6' (sex 1), one source image each, the sexes mixed over instance ids;
    then who is diseased and the location, each with probability 1/2: ``sex, sources [P, 28, 28],
    diseased, location``."""
    n_sex1 = n_instances // 2
    sex = np.repeat([0, 1], [n_instances - n_sex1, n_sex1])  # [P]
    sources = np.zeros((n_instances, 28, 28), dtype=np.float32)
    for code, digit in enumerate(DIGITS):
        sources[sex == code] = sample_digits(digit, int((sex == code).sum()), rng_digits, mnist_dir)[0]
    order = rng_design.permutation(n_instances)  # mix the sexes over instance ids
    sex, sources = sex[order], sources[order]
    diseased = rng_design.random(n_instances) < 0.5  # [P]
    location = rng_design.random(n_instances) < 0.5  # [P]
    return sex, sources, diseased, location


def _images(sources: np.ndarray, subject: np.ndarray, angle: np.ndarray, age: np.ndarray,
            progress: bool) -> np.ndarray:
    """Row ``i``: instance ``subject[i]``'s digit, padded, turned by ``angle[i]`` and shifted with age; flat."""
    padded = np.pad(sources, ((0, 0), (PAD, PAD), (PAD, PAD)))  # [P, 36, 36]
    y_full = np.empty((len(subject), IMAGE_SHAPE[0] * IMAGE_SHAPE[1]), dtype=np.float32)  # [N, 1296]
    rows = Progress(range(len(subject)), desc="health-mnist images", unit="img", enabled=progress, delay=1.0)
    for i in rows:
        y_full[i] = transform(padded[subject[i]], angle[i], SHIFT_PER_AGE * age[i]).ravel()
    return y_full


def health_mnist(
    n_instances: int = 1000,
    n_timepoints: int = 20,
    missing: float = 0.25,
    test_fraction: float = 0.2,
    train_timepoints: int = 5,
    validation_fraction: float = 0.2,
    seed: int = 0,
    mnist_dir: str | None = None,
    progress: bool = False,
) -> LongitudinalData:
    """Generate Health MNIST as :class:`LongitudinalData` (rows ordered by instance, then age).

    ``latent_truth`` columns are ``[age, rotation angle in degrees, sex, diseasePresence]``.
    Split (paper E.1): ``test_fraction`` of instances are test subjects whose first
    ``train_timepoints`` ages stay in train and the rest go to test; all other rows are split
    train/validation at random.
    """
    _check(n_instances, n_timepoints, missing, test_fraction, validation_fraction, train_timepoints)
    rng_digits, rng_design, rng_jitter, rng_mask, rng_split = streams(seed, 5)

    sex, sources, diseased, location = _instances(n_instances, rng_digits, rng_design, mnist_dir)

    # one row per (instance, age)
    subject = np.repeat(np.arange(n_instances), n_timepoints)  # [N]
    age = np.tile(np.arange(n_timepoints), n_instances).astype(np.float64)  # [N]
    disease_age = np.where(diseased[subject], age - disease_onset(n_timepoints), 0.0)  # [N]
    jitter = rng_jitter.normal(0.0, JITTER_SD, size=len(subject))  # [N]
    angle = rotation_angles(disease_age, diseased[subject], jitter)  # [N] degrees

    y_full = _images(sources, subject, angle, age, progress)  # [N, 1296]
    mask = (rng_mask.random(y_full.shape) >= missing).astype(np.uint8)  # [N, 1296]

    split = withhold_late_split(
        subject, age, cut=train_timepoints, test_fraction=test_fraction, rng=rng_split,
        validation_fraction=validation_fraction,
    )
    covariates = {
        "age": Covariate(age, "time"),
        "id": Covariate(subject, "id", levels=list(range(n_instances))),
        "sex": Covariate(sex[subject], "binary"),
        "diseasePresence": Covariate(diseased[subject], "binary"),
        "diseaseAge": Covariate(disease_age, "continuous"),
        "location": Covariate(location[subject], "binary"),
    }
    latent_truth = np.stack([age, angle, sex[subject], diseased[subject]], axis=1)  # [N, 4]
    args = dict(
        instances=n_instances, timepoints=n_timepoints, missing=missing, test_fraction=test_fraction,
        train_timepoints=train_timepoints, validation_fraction=validation_fraction,
        mnist=None if mnist_dir is None else str(mnist_dir),
    )
    attrs = generator_attrs("health_mnist", __name__, seed, args)
    attrs["image_shape"] = list(IMAGE_SHAPE)
    attrs["latent_truth_names"] = ["age", "angle_degrees", "sex", "diseasePresence"]
    return LongitudinalData(
        y=y_full * mask, mask=mask, split=split, covariates=covariates, y_full=y_full,
        latent_truth=latent_truth, attrs=attrs,
    )


def _run(args) -> LongitudinalData:
    return health_mnist(
        n_instances=args.instances, n_timepoints=args.timepoints, missing=args.missing,
        test_fraction=args.test_fraction, train_timepoints=args.train_timepoints,
        validation_fraction=args.validation_fraction, seed=args.seed, mnist_dir=args.mnist, progress=not args.quiet,
    )


register_generator(Generator("health-mnist", "Health MNIST (paper 7.1): rotating, shifting 3s and 6s", (
    *common_options(instances=1000, timepoints=20, missing=0.25, mnist=True),
    Option(("--train-timepoints",), "WHOLE", 5, "time points of each test subject kept in train (default 5)"),
), _run))
