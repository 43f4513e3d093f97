"""``ablate report``: a study's runs from MLflow as the paper's tables (with CIs) and figures."""

from ablate.report.report import Report

__all__ = ["Report"]
