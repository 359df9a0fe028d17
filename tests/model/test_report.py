"""mambaseq.report: the scripts' Markdown tables."""
from mambaseq.report import markdown_table


def test_markdown_table_has_header_rule_and_rows():
    assert markdown_table(["a", "b"], [["1", "2"], ["3", "4"]]).splitlines() == [
        "| a | b |", "|---|---|", "| 1 | 2 |", "| 3 | 4 |"]
