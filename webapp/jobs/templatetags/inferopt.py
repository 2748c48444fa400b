from django import template

register = template.Library()


@register.filter
def label(value) -> str:
    """``needs_approval`` → ``needs approval``."""
    return str(value or "").replace("_", " ")


@register.filter
def num(value, digits: int = 3):
    """A float with ``digits`` significant digits; ``—`` for missing values."""
    if value is None or value == "":
        return "—"
    try:
        return f"{float(value):.{int(digits)}g}"
    except (TypeError, ValueError):
        return value


@register.filter
def signed(value, digits: int = 3):
    if value is None:
        return "—"
    return f"{float(value):+.{int(digits)}g}"
