"""The bytes-moved model, the benchmark's CSV and the cached copy the book reads."""

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bncourse import fused, gpu, hardware

ROOT = Path(__file__).resolve().parents[1]
BOOK_CACHE = ROOT / "book" / "data" / "hardware_benchmark.csv"


def load_benchmark_module():
    spec = importlib.util.spec_from_file_location("bench", ROOT / "benchmarks" / "bench_reference_batchnorm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def inductor_cache_setting():
    """Restore ``torch._inductor.config.fx_graph_cache``, which the benchmark sets process-wide.

    Not with monkeypatch: its undo deletes an attribute that was not in the module's
    ``__dict__``, and torch's config module then hides the setting from later readers.
    """
    saved = torch._inductor.config.fx_graph_cache
    yield
    torch._inductor.config.fx_graph_cache = saved
    assert torch._inductor.config.fx_graph_cache == saved


def test_bytes_moved_counts_passes_of_the_size_of_x():
    # (32, 64, 32, 32) float32 is 8 388 608 bytes; forward and backward move 8 such tensors.
    assert hardware.bytes_moved((32, 64, 32, 32), 4, "forward+backward") == 8 * 8_388_608
    assert hardware.bytes_moved((256, 1024), 2, "inference") == 2 * 256 * 1024 * 2
    assert hardware.PASSES["forward"] + hardware.PASSES["backward"] == hardware.PASSES["forward+backward"]
    with pytest.raises(ValueError, match="^mode: expected one of 'forward'"):
        hardware.bytes_moved((4, 3), 4, "training")


def test_the_benchmark_writes_the_columns_the_loader_reads(tmp_path, monkeypatch, inductor_cache_setting):
    """A tiny run (nothing compiled: compiling is tested in test_gpu.py) writes every column."""
    monkeypatch.setattr(fused, "_compile_error", ["not compiled in this test"])
    # The benchmark sets the thread count process-wide: restored after the test.
    threads = torch.get_num_threads()
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    bench = load_benchmark_module()
    monkeypatch.setattr(bench, "compiled_reference_forward", gpu.batchnorm_forward)
    monkeypatch.setattr(bench, "compiled_reference_backward", gpu.batchnorm_backward)
    monkeypatch.setattr(bench, "COPY_BYTES", 2**20)
    bench.main(["--repeats", "1", "--threads", "1", "--shapes", "8x3", "--out", str(tmp_path), "--no-cuda",
                "--allocator", "system"])
    assert torch.get_num_threads() == threads
    rows = hardware.load_results(tmp_path / "bench_reference_batchnorm.csv")
    assert {row["mode"] for row in rows} == set(hardware.PASSES)
    torch_rows = [row for row in rows if row["impl"] == "torch"]
    assert len(torch_rows) == len(hardware.PASSES) and all(row["ratio_to_torch"] == 1 for row in torch_rows)
    assert (tmp_path / "bench_reference_batchnorm.png").stat().st_size > 0


def test_the_retaining_allocator_is_set_in_a_fresh_process():
    """``--allocator retain`` calls mallopt(3); run in a child so that this process keeps glibc's defaults."""
    script = str(ROOT / "benchmarks" / "bench_reference_batchnorm.py")
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('bench', {script!r})\n"
        "bench = importlib.util.module_from_spec(spec); spec.loader.exec_module(bench)\n"
        "bench.retain_freed_memory()\n"
        "print('retained')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "retained", done.stderr


def test_the_book_cache_matches_what_the_benchmark_writes():
    """Fails when the benchmark's columns change and book/data was not regenerated."""
    with BOOK_CACHE.open(newline="") as handle:
        header = next(csv.reader(handle))
    assert tuple(header) == hardware.COLUMNS
    rows = hardware.load_results(BOOK_CACHE)
    # The chapter shows one and two threads, every mode, the fused path and torch's kernels.
    assert {row["threads"] for row in rows} >= {1, 2}
    assert {row["mode"] for row in rows} == set(hardware.PASSES)
    assert {"fused", "torch", "numpy", "torch reference"} <= {row["impl"] for row in rows}
    # ... under both allocators, the chapter's comparison of the two.
    assert {row["allocator"] for row in rows} == {"system", "retain"}
    # ... each the median of 30 calls, as the chapter says.
    assert {row["repeats"] for row in rows} == {30}


def test_a_cache_with_other_columns_is_refused(tmp_path):
    stale = tmp_path / "stale.csv"
    stale.write_text("device,ms\ncpu,1.0\n")
    with pytest.raises(ValueError, match="stale.csv: expected the columns device, allocator, threads"):
        hardware.load_results(stale)


def new_tensors_of_size(step, nbytes):
    """How many tensors of ``nbytes`` or more ``step()`` allocates, counted by the profiler."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    # An allocation is charged to the operator that made it; "[memory]" events are the frees.
    return sum(1 for event in prof.events() if event.name != "[memory]" and event.self_cpu_memory_usage >= nbytes)


def test_new_tensors_per_call_are_those_chapter_9_counts():
    """Chapter 9 prices page faults in units of one new tensor of x's size: these are the counts."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8, 4, 16, 16, generator=generator)
    gamma, beta = torch.rand(4, generator=generator) + 0.5, torch.randn(4, generator=generator)
    mean, var = torch.zeros(4), torch.ones(4)
    dout = torch.randn(x.shape, generator=generator)
    with torch.no_grad():
        _, cache = gpu.batchnorm_forward(x, gamma, beta)
        counts = {
            # x - mu_B (which becomes x_hat), its squares, y
            "reference forward": new_tensors_of_size(lambda: gpu.batchnorm_forward(x, gamma, beta), x.nbytes),
            # dx only
            "reference backward": new_tensors_of_size(lambda: gpu.batchnorm_backward(dout, cache), x.nbytes),
            # x - mean, times the scale, plus beta: one formula per line
            "reference inference": new_tensors_of_size(
                lambda: gpu.batchnorm_inference(x, gamma, beta, mean, var), x.nbytes
            ),
            # y only. (Its backward also allocates a second buffer of x's size besides dx; the
            # benchmark's backward difference, one unit, suggests it is never written, and only
            # written pages fault, so the backward is left out here.)
            "torch forward": new_tensors_of_size(
                lambda: torch.ops.aten.native_batch_norm(x, gamma, beta, None, None, True, 0.1, 1e-5), x.nbytes
            ),
        }
    assert counts == {
        "reference forward": 3,
        "reference backward": 1,
        "reference inference": 3,
        "torch forward": 1,
    }


def test_cuda_rows_cover_the_shapes_of_the_cuda_targets(tmp_path, monkeypatch, inductor_cache_setting):
    """Without a GPU, the CUDA branch's wiring: which shapes it times and which panels it plots."""
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    bench = load_benchmark_module()
    measured = []

    def fake_measure(device, threads, shape, repeats, allocator):
        measured.append((device.type, shape))
        row = dict.fromkeys(hardware.COLUMNS, 1)
        row |= {"device": device.type, "threads": threads, "allocator": allocator, "dtype": "float32",
                "shape": "x".join(map(str, shape)), "mode": "forward+backward", "impl": "torch"}
        return [row]

    monkeypatch.setattr(bench, "measure", fake_measure)
    bench.main(["--threads", "1", "2", "--shapes", "8x3", "--out", str(tmp_path), "--allocator", "system"])
    assert measured == [
        ("cpu", (8, 3)),
        ("cpu", (8, 3)),
        ("cuda", (8, 3)),
        *(("cuda", shape) for shape in bench.CUDA_SHAPES),
    ]
    rows = hardware.load_results(tmp_path / "bench_reference_batchnorm.csv")
    assert bench.plot(rows, tmp_path / "plot.png") == [("cpu", 1), ("cpu", 2), ("cuda", 0)]
