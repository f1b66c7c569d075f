"""Secret values: cryptographically secure generation and non-reversible version markers.

Belongs here: turning a generator spec from the intent into a fresh value, and fingerprints that identify a version
without revealing it. Nothing here stores, logs or transmits a value.
"""

from chamberlain.values.generate import generate_values
from chamberlain.values.markers import version_marker

__all__ = ["generate_values", "version_marker"]
