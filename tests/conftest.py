"""Shared test fixtures."""

import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """One torch thread for small tensors: on a shared 2-core machine, OpenMP threads that wait on
    each other made the tests many times slower. Restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
