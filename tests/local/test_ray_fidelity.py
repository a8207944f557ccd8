"""The seeds' notebook, call for call, with the local backend's jobs on a Ray cluster.

The same ``run_notebook`` as tests/local/test_fidelity.py, unchanged: only the server differs
(``--executor ray`` on the session's cluster, one Ray Train worker: the path without DDP; the
data-parallel one is in test_ray_executor.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.ray_cluster import RayCluster, ray_backend
from tests.local.test_fidelity import run_notebook
from tests.local.test_fidelity import training_path as training_path  # the same fixture

pytestmark = [
    # The notebook opens the file without closing it; that is part of running it as written.
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


def test_seed_notebook_runs_unchanged_on_ray(
    ray_cluster: RayCluster, training_path: Path, tmp_path: Path
) -> None:
    backend = ray_backend(
        tmp_path, ray_cluster.address, ray_cluster.storage / "seed", workers_per_job=1
    )
    with backend, backend.client() as client:
        run_notebook(client, timeout=240, training_path=training_path)
