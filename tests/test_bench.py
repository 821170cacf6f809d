import pytest
import torch

from tlcourse import bench
from tlcourse.bench.methods import make_pairs


def test_each_method_pair_does_the_same_work_in_both_arms():
    assert len(make_pairs.__globals__["PAIRS"]) >= 9
    for pair in make_pairs(quick=True, device=torch.device("cpu"), only=["fit", "gan", "adda"]):
        engine_objects, bare_objects = pair.build(), pair.build()
        pair.engine(engine_objects)
        pair.bare(bare_objects)
        for a, b in zip(pair.result(engine_objects), pair.result(bare_objects)):
            assert torch.equal(a, b), pair.name


def test_measure_pair_reports_medians_and_spread():
    (row,) = bench.bench_methods(quick=True, repeats=1, device="cpu", only=["gan"])
    assert row["same_result"] and row["repeats"] == 1
    assert row["engine_steps_per_s"] > 0 and row["bare_steps_per_s"] > 0
    assert row["ratio_min"] <= row["ratio_median"] <= row["ratio_max"]
    with pytest.raises(ValueError, match="repeats"):
        bench.measure_pair(make_pairs(True, torch.device("cpu"), only=["gan"])[0], repeats=0)
    with pytest.raises(ValueError, match="only must name"):
        bench.bench_methods(only=["sgd"])


def test_engine_bookkeeping_is_a_small_fraction_of_a_step():
    # a 1-D GAN step, the smallest step of the course, costs a few milliseconds on a CPU
    assert 0 < bench.bench_engine_overhead(steps=300, repeats=3) < 1000


def test_data_builders_are_fast_enough():
    r = bench.bench_data_builders()
    assert r["make_mnistm (5,000 images)"] < 5.0  # vectorised: well under a second on an idle laptop core
    assert set(r) >= {"load_mnist (5,000 digits, cold)", "load_glyphs (5,300 augmented images)"}


def test_gpu_bench_needs_cuda():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="cuda"):
        bench.bench_gpu("cpu")
