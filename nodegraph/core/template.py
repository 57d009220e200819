"""Text templates from strangers: `"step {x} of {y:>4}"`, and nothing more.

`str.format` resolves `{x.__init__.__globals__[...]}` by walking attributes and items from its argument, so
a template could read `os.environ` (an HF_TOKEN, a server's token) through any input object. Here a template
may only name its fields plainly (`{x}`, `{y!r}`, `{x:.3f}`): no attribute or item access, no nested fields
in a format spec, and widths and precisions at most `max_width` (a width of 2.5·10⁹ asks for gigabytes).
"""

from __future__ import annotations

import re
import string
from typing import Any, Iterable, Optional

# [[fill]align][sign][z][#][0][width][grouping][.precision][type] — Python's format-spec mini-language
_SPEC = re.compile(r"^(?:.?[<>=^])?[+\- ]?z?#?0?(?P<width>\d*)[,_]?(?:\.(?P<precision>\d+))?[bcdeEfFgGnosxX%]?$",
                   re.DOTALL)


class TemplateError(ValueError):
    """A template that names anything but its plain fields, or asks for too wide a field."""


def check_template(template: str, names: Iterable[str], max_width: int) -> list[tuple[str, str, Optional[str],
                                                                                    Optional[str]]]:
    """The template's parts (literal, field, spec, conversion); TemplateError saying what is not allowed."""
    names = tuple(names)
    allowed = ", ".join(f"{{{n}}}" for n in names)
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:  # an unmatched `{` or `}`
        raise TemplateError(f"the template is malformed ({exc}); write {{{{ and }}}} for literal braces") from None
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if conversion not in (None, "r", "s", "a"):
            raise TemplateError(f"`{{{field}!{conversion}}}`: the conversion is one of !r, !s, !a")
        if field not in names:
            shown = field if len(field) <= 40 else field[:40] + "…"
            raise TemplateError(f"`{{{shown}}}` is not allowed: a field is one of {allowed}, without attribute "
                                "(`.name`) or item (`[key]`) access")
        if spec and ("{" in spec or "}" in spec):
            raise TemplateError(f"the format of `{{{field}}}` cannot contain another field")
        match = _SPEC.match(spec or "")
        if match is None:
            raise TemplateError(f"`{{{field}:{spec[:40]}}}`: not a valid format")
        for what in ("width", "precision"):
            if match[what] and (len(match[what]) > 9 or int(match[what]) > max_width):
                raise TemplateError(f"`{{{field}:{spec[:40]}}}`: the {what} is over the limit of {max_width:,}")
    return parts


def render(template: str, values: dict[str, Any], max_width: int) -> str:
    """The template filled with `values` (checked first by `check_template`)."""
    out = []
    for literal, field, spec, conversion in check_template(template, values, max_width):
        out.append(literal)
        if field is None:
            continue
        value = values[field]
        if conversion == "r":
            value = repr(value)
        elif conversion == "a":
            value = ascii(value)
        elif conversion == "s":
            value = str(value)
        out.append(format(value, spec or ""))
    return "".join(out)
