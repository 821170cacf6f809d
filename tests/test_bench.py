import pytest

from tlcourse import bench


def test_fit_overhead_report_is_sane():
    r = bench.bench_fit_overhead(n_images=256, batch_size=64, rounds=1, device="cpu")
    assert r["fit_samples_per_s"] > 0 and r["bare_samples_per_s"] > 0
    assert 0.3 < r["ratio"] < 3.0  # noisy on a shared CI machine; the benchmark reports the real figure


def test_data_builders_are_fast_enough():
    r = bench.bench_data_builders()
    assert r["make_mnistm (5,000 images)"] < 5.0  # vectorised: well under a second on an idle laptop core
    assert set(r) >= {"load_mnist (5,000 digits, cold)", "load_glyphs (5,300 augmented images)"}


def test_gpu_bench_needs_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="cuda"):
        bench.bench_gpu("cpu")
