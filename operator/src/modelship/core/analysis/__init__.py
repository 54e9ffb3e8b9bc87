"""Analysis of a candidate version: PromQL queries, per-check verdicts, run bookkeeping."""

from modelship.core.analysis.queries import (
    DEFAULT_CHECKS,
    PLACEHOLDERS,
    CheckQuery,
    QueryContext,
    TemplateError,
    analysis_checks,
    check_errors,
    check_query,
    error_ratio_query,
    mean_latency_query,
    p99_latency_query,
    render_template,
    template_errors,
)
from modelship.core.analysis.runs import RunOutcome, aggregate, record_run
from modelship.core.analysis.verdicts import Measurement, threshold_text, verdict

__all__ = [
    "DEFAULT_CHECKS",
    "PLACEHOLDERS",
    "CheckQuery",
    "Measurement",
    "QueryContext",
    "RunOutcome",
    "TemplateError",
    "aggregate",
    "analysis_checks",
    "check_errors",
    "check_query",
    "error_ratio_query",
    "mean_latency_query",
    "p99_latency_query",
    "record_run",
    "render_template",
    "template_errors",
    "threshold_text",
    "verdict",
]
