from django import template

from annotation.markdown import render_markdown

register = template.Library()


@register.filter(name="markdown")
def markdown_filter(text: str | None):
    """Render Markdown sanitised: ``{{ text|markdown }}``."""
    return render_markdown(text or "")
