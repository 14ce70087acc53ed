"""Diagnose: why an item fails, and whether the checks would notice.

Owns fault localisation (which graph nodes to keep in fp32, ``fault_localisation``) and the sensitivity runs
(which check catches which injected fault, ``sensitivity``). May import items and every layer below.
"""
