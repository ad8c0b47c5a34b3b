"""Model cards (Hugging Face format), provenance statements (in-toto / SLSA v1), DSSE signatures
and their verification, for quantized candidates. See docs/trust.md.

- ``card``: ``render_model_card(context) -> (markdown, json twin)``
- ``provenance``: ``digest_tree``, ``build_statement`` (pure)
- ``signing``: ed25519 keys, ``sign_statement`` (DSSE)
- ``verify``: ``verify_model`` -> ``VerificationReport``
- ``trust``: MLflow I/O: ``attach_provenance``, ``verify_version``, ``verify_for_promotion``
"""
