"""The campaign engine: options, the one batch check, the campaign loop and the search strategies."""
