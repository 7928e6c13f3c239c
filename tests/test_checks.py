"""bnlib.checks: the short form of a value in error messages."""

from bnlib import checks


def test_short_keeps_80_characters_and_cuts_longer_text_to_80():
    whole = "x" * 78                                # its repr has 80 characters, quotes included
    assert checks.short(whole) == repr(whole)
    cut = checks.short("x" * 79)                    # 81: cut to 77 characters and "..."
    assert cut == repr("x" * 79)[:77] + "..." and len(cut) == 80
