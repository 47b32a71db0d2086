"""Offline evaluation: replay of routing policies on real outcomes, reference policies, the nested router report,
routing metrics (also as ``evaluate`` modules), baselines and plots."""
