"""One exception hierarchy whose messages a user can act on; the CLI maps them to exit codes."""


class DeeptestError(Exception):
    """Base of every error deeptest-iot raises on purpose. Exit code 2: bad usage or bad input."""

    exit_code = 2


class ConfigError(DeeptestError):
    """A bad option or configuration value."""


class ModelError(DeeptestError):
    """A model file that cannot be loaded, or a model that cannot be tested as asked."""


class InputError(DeeptestError):
    """Unreadable images, wrong shapes, bad labels."""


class OutputError(DeeptestError):
    """The model produced NaN or Inf, or an output the model card cannot read.

    ``inputs`` holds the positions in the batch of the inputs concerned, when known, so that a
    caller who knows where they came from (seed files, transform chains) can name them."""

    def __init__(self, message: str, inputs=None):
        super().__init__(message)
        self.inputs = inputs


class UnsupportedError(DeeptestError):
    """A valid request the tool does not support (say so, do not guess)."""


class InternalError(DeeptestError):
    """A bug in deeptest-iot. Exit code 3."""

    exit_code = 3
