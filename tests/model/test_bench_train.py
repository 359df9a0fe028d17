"""scripts/bench_train.py --tiny: every requested row trains on CPU (or reports why not) and is counted right."""
import math
from functools import partial

from script_loader import load_script

_load_script = partial(load_script, "bench_train")


def test_tiny_run_times_every_cpu_row(capsys) -> None:
    rows = _load_script().main(["--tiny", "--markdown"])
    assert [(row.arch, row.name) for row in rows] == [
        ("mamba1", "mambaseq auto (full logits)"), ("mamba1", "mambaseq auto (chunked loss)"),
        ("mamba1", "transformers MambaForCausalLM"),
        ("mamba2", "mambaseq auto (full logits)"), ("mamba2", "mambaseq auto (chunked loss)")]
    for row in rows:
        assert not row.error, row
        assert abs(row.tokens_per_s - 2 * 32 * 2 / (row.ms_per_step * 2 / 1e3)) < 1e-6 * row.tokens_per_s
        assert abs(row.first_loss - math.log(500)) < 1.0  # random init: near the uniform loss over 504 ids
    out = capsys.readouterr().out
    assert "| arch | implementation | tokens/s |" in out


def test_rows_that_cannot_run_report_their_error_and_the_run_goes_on(capsys) -> None:
    rows = _load_script().main(["--tiny", "--arch", "mamba2", "--impls", "transformers,mambaseq_light"])
    assert [row.name for row in rows] == ["mambaseq auto (chunked loss)"]  # transformers' Mamba is Mamba-1 only
    rows = _load_script().main(["--tiny", "--arch", "mamba1", "--impls", "mambaseq_light,mambaseq",
                                "--loss-chunk-size", "0"])
    assert "chunk_size=0" in rows[0].error and not rows[1].error
    assert f"mamba1 {rows[0].name}: error: ValueError" in capsys.readouterr().out


def test_default_rows_include_the_triton_backend_and_compile_is_opt_in() -> None:
    module = _load_script()
    default = module.parse_args([]).impls
    assert "mambaseq_triton" in default and "mamba_ssm" in default and "mambaseq_compile" not in default
    assert module.parse_args(["--compile"]).impls == [*default, "mambaseq_compile"]
    assert module.KERNEL_BACKENDS["mambaseq_triton"] == "triton"


def test_profile_prints_the_top_ops_of_each_row(capsys) -> None:
    _load_script().main(["--tiny", "--arch", "mamba1", "--impls", "mambaseq_light", "--profile", "1",
                         "--profile-rows", "5"])
    out = capsys.readouterr().out
    assert "profile of mamba1 mambaseq auto (chunked loss): 1 call(s), top 5 by self_cpu_time_total" in out
    assert "Self CPU" in out and "aten::" in out
