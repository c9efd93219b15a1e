"""Keywords from the config, checked against what a builder takes before it is called.

``model.params``, ``loss.params``, ``optimizer.params``, ... are passed as keywords to
a builder or class. :func:`check_keywords` reads the callable's signature and refuses
a key it does not take with a ConfigError naming ``<section>.<key>`` and the keywords
it does take. A builder whose ``**kwargs`` go to a known class says so with
:func:`forwards_keywords`; one whose ``**kwargs`` go where mediscope cannot see
(timm's ``create_model``) or that checks them itself accepts any key here.

Example:
    >>> import torch
    >>> check_keywords(torch.nn.CrossEntropyLoss, {"label_smoothing": 0.1},
    ...                owner="CrossEntropyLoss", section="loss.params")
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

from mediscope.errors import ConfigError
from mediscope.registry import unknown_name_hint

F = TypeVar("F", bound=Callable[..., Any])

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def check_keywords(
    fn: Callable[..., Any],
    params: Mapping[str, Any],
    *,
    owner: str,
    section: str,
    fixed: Collection[str] = (),
) -> None:
    """Raises a ConfigError for the first key of ``params`` that ``fn`` takes no keyword of.

    Nothing is checked when ``fn`` has no readable signature or takes ``**kwargs``
    (see :func:`forwards_keywords`). Values are not checked.

    Args:
        fn: The function or class that will be called with ``**params``.
        params: The keywords from the config (``model.params``, ...).
        owner: What is built, for the message (``simple_cnn``, ``AdamW``).
        section: The config key of ``params``.
        fixed: Keywords mediscope sets itself, not listed as valid.

    Raises:
        ConfigError: ``<owner> takes no keyword '<key>'`` at ``<section>.<key>``, with a
            "did you mean" and the keywords ``fn`` takes.
    """
    parameters = _parameters(fn)
    if parameters is None:
        return
    names = [p.name for p in parameters if p.kind in _NAMED]
    for key in params:
        if key not in names:
            valid = [n for n in names if n not in {"self", *fixed}]
            hint = unknown_name_hint(key, valid) if valid else f"see the keywords of {owner}"
            raise ConfigError(
                f"{owner} takes no keyword '{key}'", where=f"{section}.{key}", hint=hint
            )


def forwards_keywords(target: Callable[..., Any]) -> Callable[[F], F]:
    """Declares that a builder passes its ``**kwargs`` on to ``target``.

    The builder's signature (as :mod:`inspect` and :func:`check_keywords` see it) becomes
    its own keywords followed by those of ``target`` it does not name itself.

    Example:
        >>> class Net:
        ...     def __init__(self, width: int = 8) -> None: ...
        >>> @forwards_keywords(Net)
        ... def build(*, num_classes: int, **params: int) -> Net:
        ...     return Net(**params)
        >>> list(inspect.signature(build).parameters)
        ['num_classes', 'width']
    """

    def declare(builder: F) -> F:
        own = inspect.signature(builder)
        kept = [p for p in own.parameters.values() if p.kind != p.VAR_KEYWORD]
        taken = {p.name for p in kept}
        for p in inspect.signature(target).parameters.values():
            if p.name in taken or p.kind in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL):
                continue
            kept.append(p if p.kind == p.VAR_KEYWORD else p.replace(kind=p.KEYWORD_ONLY))
        setattr(builder, "__signature__", own.replace(parameters=kept))  # noqa: B010
        return builder

    return declare


def _parameters(fn: Callable[..., Any]) -> list[inspect.Parameter] | None:
    """The parameters of ``fn``; None when it has none to read or takes ``**kwargs``."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature
        return None
    if any(p.kind == p.VAR_KEYWORD for p in parameters):
        return None
    return parameters
