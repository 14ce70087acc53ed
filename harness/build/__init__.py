"""Build: from weights to the artifact a runtime loads, each built once and cached by content.

Owns published weights (``weights``), the fp32 network (``networks``, architectures in :mod:`harness.models`),
ONNX export and graph import (``export``, ``graph_import``), the fp16 / int8 builds (``precisions``), the
content-addressed cache (``artifacts``, ``artifact``) and the VACC build files (``vamc``, ``vdsp``, with
``vdsp_compare`` checking a vdsp file against a case). May import :mod:`harness.models`, :mod:`harness.data` and
:mod:`harness.machine`.
"""
