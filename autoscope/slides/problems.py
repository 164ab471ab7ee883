"""Why a file cannot be used as a slide: the one exception every slide reader raises."""


class SlideProblem(Exception):
    """A file that cannot be registered as a usable slide; the message says why, for a person."""
