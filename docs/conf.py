"""
Sphinx configuration of the docs site. ``nox -s docs`` builds it into
``docs/_build/html`` with warnings as errors.

The pages are MyST Markdown, readable as they are on GitHub too. The API
reference (``api.md``) is generated from the docstrings by autodoc. The build
is offline: no intersphinx, nothing fetched, so it runs wherever pip does.
"""

from __future__ import annotations

import re
import typing

import attrs
from sphinx.application import Sphinx

import fsjobs

project = "fsjobs"
author = "fsjobs developers"
copyright = "fsjobs developers"
release = fsjobs.__version__
version = ".".join(release.split(".")[:2])

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# The console lexer cannot follow a multi-line quoted argument (format.md has one);
# such a block is shown unhighlighted, which is no reason to fail the build.
suppress_warnings = ["misc.highlighting_failure"]

# MyST: heading anchors as GitHub makes them, so `page.md#some-heading` links work in
# both places (scripts/check_docs.py checks them with GitHub's rules).
myst_heading_anchors = 6

# In docstrings, `name` is a cross-reference to a Python object (unresolved ones stay
# plain text); ``name`` is literal code.
default_role = "py:obj"
autodoc_member_order = "bysource"
autodoc_class_signature = "mixed"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_type_aliases = {"JSON": "JSON"}  # the JSON value type, not its expansion

html_theme = "furo"
html_title = f"fsjobs {release}"
html_static_path: list[str] = []


#: Classes fsjobs creates for you: their constructor is not part of the API.
MADE_BY_FSJOBS = {"fsjobs.Context", "fsjobs.Task"}
ATTRS_DEFAULT = re.compile(r"attr_dict\['(\w+)'\]\.default|NOTHING")
#: How Sphinx 9 prints a type alias nested in a generic: ``TypeAliasForwardRef('JSON')``.
ALIAS_REPR = re.compile(r"TypeAliasForwardRef\('([^']+)'\)")


def _signature(
    app: Sphinx,
    what: str,
    name: str,
    obj: object,
    options: object,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str, str | None] | None:
    """
    Signatures as a reader wants them: no constructor for classes fsjobs builds itself,
    type aliases by name, and for attrs classes the default values rather than the
    ``attr_dict[...]`` expressions ``autodoc_preserve_defaults`` finds in the generated
    ``__init__``.
    """
    if what in ("class", "exception") and name in MADE_BY_FSJOBS:
        return "", return_annotation
    if signature is None:
        return None
    signature = ALIAS_REPR.sub(r"\1", signature)
    if return_annotation:
        return_annotation = ALIAS_REPR.sub(r"\1", return_annotation)
    if isinstance(obj, type) and attrs.has(obj):
        defaults = iter(
            f.default for f in attrs.fields(obj) if f.init and f.default is not attrs.NOTHING
        )

        def default(match: re.Match[str]) -> str:
            value = next(defaults)
            if isinstance(value, attrs.Factory):  # type: ignore[arg-type]
                value = value.factory()
            return repr(value)

        signature = ATTRS_DEFAULT.sub(default, signature)
    return signature, return_annotation


def _bases(app: Sphinx, name: str, obj: object, options: object, bases: list[type]) -> None:
    """Show a private base class as the public bases it stands for."""
    public: list[type] = []
    for base in bases:
        public.extend(base.__bases__ if base.__name__.startswith("_") else (base,))
    bases[:] = list(dict.fromkeys(public))


def setup(app: Sphinx) -> dict[str, typing.Any]:
    app.connect("autodoc-process-signature", _signature)
    app.connect("autodoc-process-bases", _bases)
    return {"parallel_read_safe": True}
