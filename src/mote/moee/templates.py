"""Prompt templates and the reference code's text preprocessing (MoEE, Li & Zhou, ICLR 2025).

A template is a string with one ``{text}`` slot. The named templates are the exact strings of the reference code
(``tianyi-lab/MoE-Embedding``, ``moee.py``; its ``*sent 0*`` slot is written ``{text}`` here), so that
``template="prompteol", preprocess=True`` feeds the model the very prompt the paper's code fed it.

Example:
    >>> render('He said "hi" twice', "prompteol", preprocess=True)
    'This sentence : "He said \\'hi\\' twice." means in one word:"'
    >>> render("a cat", "none")
    'a cat'
"""

from __future__ import annotations

TEXT_SLOT = "{text}"

TEMPLATES: dict[str, str] = {
    # No template: the text as it is.
    "none": "{text}",
    # The reference code's "none" (`embed_method='none'`): the text in double quotes. The paper's Table 3
    # ("without prompts") was produced with this one.
    "quoted": '"{text}"',
    # PromptEOL, exact code form (space before the first colon, trailing opening quote). Paper Table 4.
    "prompteol": 'This sentence : "{text}" means in one word:"',
    # PromptEOL as printed in the paper (not what the code ran).
    "prompteol-paper": 'This sentence: "{text}" means in one word: ',
    # The other eight prompts of the paper's robustness analysis (Table 2), exact code forms.
    "style": 'In one word, describe the style of the following sentence - "{text}" :"',
    "sentiment": "In one word, describe the sentiment of the following sentence (positive, neutral, or negative) - "
    '"{text}" :',
    "tone": 'In one word, describe the tone of the following sentence - "{text}" (e.g., formal, informal, humorous, '
    "serious):",
    "intent": "In one word, describe the intent behind the following sentence (e.g., request, suggestion, command) - "
    '"{text}" :',
    "complexity": "In one word, rate the complexity of the following sentence (simple, moderate, complex) - "
    '"{text}" :',
    "subjectivity": 'In one word, describe whether the following sentence is subjective or objective - "{text}" :',
    "language_style": "In one word, describe the language style of the following sentence (e.g., academic, "
    'conversational, literary) - "{text}" :',
    "grammar_structure": "In one word, describe the grammatical structure of the following sentence (simple, "
    'compound, complex) - "{text}" :',
}

# The nine prompts of the paper's prompt-robustness analysis (Table 2 / Fig. 4-5), in the paper's order.
PAPER_PROMPTS: tuple[str, ...] = (
    "prompteol",
    "style",
    "sentiment",
    "tone",
    "intent",
    "complexity",
    "subjectivity",
    "language_style",
    "grammar_structure",
)

EMPTY_POLICIES: tuple[str, ...] = ("period", "error")


def resolve_template(template: str) -> str:
    """The template string for a name in :data:`TEMPLATES`, or ``template`` itself if it holds ``{text}``.

    Example:
        >>> resolve_template("quoted"), resolve_template("Query: {text}")
        ('"{text}"', 'Query: {text}')
    """
    if not isinstance(template, str):
        raise TypeError(f"A template is a string, got {type(template).__name__}")
    if template in TEMPLATES:
        return TEMPLATES[template]
    if TEXT_SLOT not in template:
        raise ValueError(
            f"Template {template!r} is neither a known template name ({', '.join(TEMPLATES)}) nor a string with a "
            f'{TEXT_SLOT} slot for the text, e.g. \'This sentence : "{{text}}" means in one word:"\'.'
        )
    return template


def template_name(template: str) -> str:
    """The short name of a template for labels: its key in :data:`TEMPLATES`, else ``"custom"``."""
    if template in TEMPLATES:
        return template
    resolved = resolve_template(template)
    return next((name for name, t in TEMPLATES.items() if t == resolved), "custom")


def reference_preprocess(text: str) -> str:
    """The reference code's sentence clean-up: end with one of ``.?!"'`` (else append ``.``), ``"`` -> ``'``.

    Example:
        >>> reference_preprocess('say "cheese" now'), reference_preprocess('say "cheese"')
        ("say 'cheese' now.", "say 'cheese'")
    """
    if text and text[-1] not in ".?!\"'":
        text += "."
    return text.replace('"', "'")


def render(
    text: str,
    template: str = "prompteol",
    *,
    preprocess: bool = False,
    instruction: str = "",
    empty_text: str = "period",
) -> str:
    """The prompt the model sees for ``text``.

    Args:
        template: a name in :data:`TEMPLATES` or a string with a ``{text}`` slot.
        preprocess: apply the reference code's preprocessing: :func:`reference_preprocess` on the text, then every
            ``_`` of the filled-in prompt becomes a space and the prompt is stripped.
        instruction: prepended to the text before preprocessing and templating (where the reference code puts its
            per-dataset E5 instruction).
        empty_text: ``"period"``: an empty (or whitespace-only) text becomes ``"."``, as the reference code intends
            for empty sentences; ``"error"``: raise ``ValueError``.

    Example:
        >>> render("", "none")
        '.'
    """
    if not isinstance(text, str):
        raise TypeError(f"MoEE encodes text only, got {type(text).__name__} ({text!r:.60})")
    if empty_text not in EMPTY_POLICIES:
        raise ValueError(f"empty_text must be one of {EMPTY_POLICIES}, got {empty_text!r}")
    tmpl = resolve_template(template)
    if not text.strip():
        if empty_text == "error":
            raise ValueError(
                "Empty text: MoEE reads the last token, so an empty text has none (empty_text='period' "
                "encodes it as '.', as the reference code does)"
            )
        text = "."
    text = instruction + text
    if not preprocess:
        return tmpl.replace(TEXT_SLOT, text)
    return tmpl.replace(TEXT_SLOT, reference_preprocess(text)).replace("_", " ").strip()


__all__ = [
    "EMPTY_POLICIES",
    "PAPER_PROMPTS",
    "TEMPLATES",
    "reference_preprocess",
    "render",
    "resolve_template",
    "template_name",
]
