"""Figure makers. Each figure is a function that takes a small config and returns
(matplotlib Figure, data dict); the CLI (`linear-theory figures`) chooses, saves, reports."""

from .registry import FIGURES, FigureSpec, names, select  # noqa: E402,F401
