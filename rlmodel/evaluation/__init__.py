"""Evaluation: run policies on paired episodes, the offline oracle, summaries and reports."""
