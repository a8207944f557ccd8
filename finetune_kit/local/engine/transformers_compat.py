"""What differs between the transformers releases the local engine supports.

transformers 5.24 renamed the ``past_key_values`` argument of a model's ``forward`` to ``cache``
(the old name still works until 5.40, with a deprecation warning on every call). The engine
passes its own ``DynamicCache`` and reads it back in place, so only the argument's name differs;
it is read off the model's signature, not off a version number, so a backport or a rename in
another model class is followed too.

Example:
    >>> class Old:
    ...     def forward(self, input_ids=None, past_key_values=None): ...
    >>> class New:
    ...     def forward(self, input_ids=None, cache=None): ...
    >>> cache_argument(Old()), cache_argument(New())
    ('past_key_values', 'cache')
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

__all__ = ["cache_argument"]


def cache_argument(model: Any) -> str:
    """The name under which ``model.forward`` takes a key/value cache."""
    model_class: Any = type(model)  # typeshed sees type[Any] as unhashable
    return _cache_argument(model_class)


@functools.cache
def _cache_argument(model_class: Any) -> str:
    # Once per model class: the engine asks on every decoding step.
    parameters = inspect.signature(model_class.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"
