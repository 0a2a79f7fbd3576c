"""Test-wide settings: one torch thread. The models in the tests are tiny, and on a 2-core machine
shared with other processes several threads per model spin more than they compute."""

import torch

torch.set_num_threads(1)
