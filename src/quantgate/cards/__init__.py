"""Model cards (and, later, provenance and signatures) for quantized candidates."""
