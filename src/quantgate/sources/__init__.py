"""Source kinds: how a registered MLflow model version becomes something quantgate can govern.

One module per kind, each a registered handler (like the recipes): ``matches(meta)`` says whether
a version is of that kind, ``load(ctx)`` returns a :class:`~quantgate.models.wrapped.WrappedModel`.
A version that no handler takes is refused with one line naming its flavors and what would work.
Adding a kind is one new module listed in :data:`quantgate.sources.base.KIND_MODULES`.
"""

from quantgate.sources.base import SourceContext, SourceHandler, load_source, register_source, source_kinds

__all__ = ["SourceContext", "SourceHandler", "load_source", "register_source", "source_kinds"]
