"""The decision layer: what turns encoder outputs into calibrated P(success) and expected cost per tier.

One fitted model per module (stacker, calibration, cost model, verifier, conformal tau), each with one ``fit`` and
one ``predict`` that training, evaluation and the torch-free runtime all call; tree models predict through
:mod:`.trees` (all boosters of a model as one numpy forest, checked against XGBoost). :mod:`.stage` is the stack
stage that fits them on out-of-fold predictions; :mod:`.xgb` saves/loads boosters (JSON/UBJ, never pickle).
"""
