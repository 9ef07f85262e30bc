"""``stylexport bench``: run (the harness), timing (clocks and statistics), environment (the machine and
its peak), report (JSON, Markdown, plot)."""

from stylexport.bench.report import markdown_table, plot, write_results
from stylexport.bench.run import BENCH_ENGINES, NAMED_SIZES, BenchConfig, Skip, make_backend, parse_size, run
from stylexport.bench.timing import percentiles

__all__ = ["BENCH_ENGINES", "NAMED_SIZES", "BenchConfig", "Skip", "make_backend", "markdown_table", "parse_size",
           "percentiles", "plot", "run", "write_results"]
