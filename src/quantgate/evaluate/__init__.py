"""Evaluation of a candidate against its fp32 baseline: pure metric math + runtime measures."""
