"""facegate: self-hosted face recognition that speaks the Amazon Rekognition face API.

Layers, innermost first: ``engine`` (pure computation), ``store`` (persistence),
``service`` (Rekognition semantics), ``governance`` (the gate around the service),
``api`` (the AWS JSON 1.1 wire). Imports point inward only.
"""

__version__ = "0.1.0"
