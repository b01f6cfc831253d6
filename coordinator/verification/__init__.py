"""Deciding what is true: the verdict from commitments and reveals, numeric grouping of
outputs, benchmark challenges of advertised speed, and the reputation they feed."""
