"""scripts/bench_generate.py --tiny: every requested row runs on CPU (or reports why not) and is counted right."""
import json
import math
from functools import partial
from pathlib import Path

from script_loader import load_script

_load_script = partial(load_script, "bench_generate")


def test_tiny_run_times_eager_and_transformer_rows(tmp_path: Path, capsys) -> None:
    out = tmp_path / "rows.json"
    rows = _load_script().main(["--tiny", "--repeats", "1", "--batch", "1,2", "--new-tokens", "4",
                                "--json", str(out)])
    assert [(row.name, row.batch) for row in rows] == [
        ("mambaseq eager", 1), ("mambaseq eager", 2),
        ("transformer (HF GPT-NeoX, SDPA, KV cache)", 1), ("transformer (HF GPT-NeoX, SDPA, KV cache)", 2)]
    for row in rows:
        assert not row.error, row
        assert row.prefill_s > 0 and row.total_s > 0
        assert abs(row.total_tokens_per_s - row.batch * 4 / row.total_s) < 1e-6 * row.total_tokens_per_s
        # One timed repeat on a loaded CPU can make the 1-token prefill outlast the 4-token run: no decode rate then.
        if row.total_s > row.prefill_s:
            decode_rate = row.batch * 3 / (row.total_s - row.prefill_s)
            assert abs(row.decode_tokens_per_s - decode_rate) < 1e-6 * decode_rate  # relative: tiny CPU times
        else:
            assert math.isnan(row.decode_tokens_per_s)
    assert [row.same_tokens for row in rows[:2]] == [1.0, 1.0]
    assert len(json.loads(out.read_text())["rows"]) == 4
    assert "vs transformer (dec/tot)" in capsys.readouterr().out


def test_rows_that_cannot_run_on_cpu_report_their_error(capsys) -> None:
    rows = _load_script().main(["--tiny", "--repeats", "1", "--batch", "1", "--impls", "cuda_graph"])
    assert len(rows) == 1 and "needs the model on a CUDA device" in rows[0].error
    assert "error: RuntimeError" in capsys.readouterr().out


def test_profile_prints_the_top_ops_of_each_row(capsys) -> None:
    _load_script().main(["--tiny", "--repeats", "1", "--batch", "1", "--impls", "eager", "--profile", "3",
                         "--profile-rows", "5"])
    out = capsys.readouterr().out
    assert "profile of mambaseq eager b1, prompt 16 + 3 new tokens: 1 call(s), top 5 by self_cpu_time_total" in out
    assert "aten::" in out
