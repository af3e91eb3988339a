"""Slice-level and patient-to-patient (PTP) metrics, plots and reports; no Kedro."""
