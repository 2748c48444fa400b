"""2:4 semi-structured sparsity on a CUDA GPU with sparse tensor cores (``make gpu-check``; skipped elsewhere).

Checks that ``torch.sparse.to_sparse_semi_structured`` accepts the pass's masks,
that the sparse Linear computes what the dense masked Linear computes, and that
the pass times sparse vs dense on such a GPU. A random digits CNN is used, so
the GPU machine needs no zoo build.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from optimizers.artifacts import ModelArtifact  # noqa: E402
from optimizers.models import save_torch_module  # noqa: E402
from optimizers.models.digits_cnn import build, default_config  # noqa: E402
from optimizers.passes.sparsity_2_4 import follows_2_4, mask_2_4, semi_structured_linear_check  # noqa: E402
from tests.optimizers.conftest import run_pass  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(
        torch.cuda.is_available() and torch.cuda.get_device_capability() < (8, 0),
        reason="2:4 sparse tensor cores need compute capability ≥ 8.0",
    ),
]


def test_semi_structured_conversion_matches_the_dense_masked_linear():
    from torch.sparse import to_sparse_semi_structured

    torch.manual_seed(0)
    weight = torch.randn(256, 512)
    weight = weight * mask_2_4(weight)
    assert follows_2_4(weight)
    dense = weight.to(device="cuda", dtype=torch.float16)
    sparse = to_sparse_semi_structured(dense)
    inputs = torch.randn(128, 512, device="cuda", dtype=torch.float16)
    expected = torch.nn.functional.linear(inputs, dense)
    got = torch.nn.functional.linear(inputs, sparse)
    assert torch.allclose(got, expected, atol=1e-2, rtol=1e-2)
    timing = semi_structured_linear_check(weight, batch=1024)
    assert timing["dense_ms"] > 0 and timing["sparse_ms"] > 0 and timing["max_abs_diff"] < 5e-2


def test_the_pass_times_sparse_against_dense_on_the_gpu(tmp_path):
    torch.manual_seed(0)
    config = default_config(channels=[16, 64], hidden=256)
    save_torch_module(build(config), config, tmp_path / "cnn")
    cnn = ModelArtifact.from_folder(tmp_path / "cnn", name="cnn", format="torch", task="image-classification")
    sparse = run_pass("sparsity_2_4", cnn, tmp_path / "sparse")
    gpu = sparse.metadata["details"]["gpu"]
    assert gpu["device"] == torch.cuda.get_device_name()
    timed = [row for row in gpu["layers"] if "sparse_ms" in row]
    assert timed, f"no Linear layer could be converted: {gpu['layers']}"
    for row in timed:
        assert row["max_abs_diff"] < 5e-2
    print({row["name"]: (row.get("dense_ms"), row.get("sparse_ms"), row.get("error")) for row in gpu["layers"]})
