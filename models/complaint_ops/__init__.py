"""Complaint operations: volume forecast, staffing, satisfaction by unit, heat maps and complaint text.

Pure estimators (frames in, frames out); `pipelines.complaints` does the I/O.
"""
