"""pytest integration: the plugin, its settings, the session's state, the metamorphic helper, Hypothesis strategies."""
