"""Wire test vectors shared by the encoder and decoder tests (and by C implementers)."""
