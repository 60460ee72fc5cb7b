"""The errors npgpt raises.

Every error a user can cause (a bad config, a token id outside the vocabulary, a checkpoint
that does not match) is raised where the bad value enters, with the value and what was
expected, as a subclass of :class:`NpgptError`. The CLI turns these into one clear line and
a non-zero exit.
"""


class NpgptError(Exception):
    """Base class of every error npgpt raises on purpose."""


class ConfigError(NpgptError, ValueError):
    """A configuration value that cannot work, e.g. ``n_embd=100 is not divisible by n_head=3``."""


class InputError(NpgptError, ValueError):
    """Bad data given to a layer or model: token ids outside the vocabulary, a sequence
    longer than ``block_size``, an array of the wrong shape or dtype."""


class BackwardError(NpgptError, RuntimeError):
    """``backward`` called with nothing to differentiate: before ``forward``, or after a
    forward run in inference mode (``eval()`` / ``no_grad``), which keeps no activations."""


class StateDictError(NpgptError, KeyError):
    """A state dict whose keys or shapes do not match the module (all offenders are named)."""

    def __str__(self):  # KeyError would repr() the message; show it as written
        return str(self.args[0]) if self.args else ""


class CheckpointError(NpgptError):
    """A checkpoint directory or file that is missing, corrupted or does not match."""


class TokenizerError(NpgptError, ValueError):
    """A tokenizer that cannot encode the text given, or a tokenizer file that does not parse."""


class DataError(NpgptError):
    """A corpus or token file that cannot be read or is too small to batch from."""


class TrainingError(NpgptError, RuntimeError):
    """Training cannot go on, e.g. the loss became NaN or infinite."""


class GradcheckError(NpgptError, AssertionError):
    """An analytic gradient disagrees with finite differences (raised by ``npgpt.gradcheck``)."""


class DistributedError(NpgptError, RuntimeError):
    """A multi-process run that cannot go on: ranks whose weights differ, a rank that stopped
    answering, MPI launched without mpi4py installed."""


def describe(error: BaseException) -> str:
    """``error`` as the one line a command prints: an OSError names its path and says what
    happened (Python's own text for a full disk, "[Errno 28] No space left on device", says
    nowhere where)."""
    if isinstance(error, OSError):
        what = error.strerror or str(error)
        paths = [p for p in (error.filename, error.filename2) if p is not None]
        return f"{' -> '.join(map(str, paths))}: {what}" if paths else what
    return " ".join(str(error).split("\n")) or type(error).__name__
