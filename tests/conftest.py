"""Test-wide settings: one torch thread. The models in the tests are tiny, and on a 2-core machine
shared with other processes several threads per model spin more than they compute. The setting is
also exported, so that lmmvae.training.runtime.set_threads (called by every fit and load) keeps one thread
instead of switching an image model to two for the rest of the session."""

import os

import torch

os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)
