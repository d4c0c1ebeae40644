"""benchmarks/gpu_check.sh on a machine without CUDA: says so, skips, succeeds, writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path of the script")
def test_gpu_check_skips_the_cuda_parts_with_a_clear_message(tmp_path):
    results = tmp_path / "RESULTS.md"
    env = dict(os.environ, PYTHON=sys.executable, GPU_CHECK_RESULTS=str(results))
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh")],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA device visible" in proc.stdout
    assert "skipping the GPU tests" in proc.stdout
    assert not results.exists()
