"""`lmmvae fit | evaluate | mcc | predict` (being built)."""


def register(subparsers) -> None:
    pass
