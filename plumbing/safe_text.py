"""Text that comes from outside, a file's name or a data set's name from a run's
record, made safe to print, to write as UTF-8 and to draw with matplotlib.

``shown`` makes it printable: a file name's bytes that are not UTF-8 appear as
backslash escapes. ``plain`` also keeps matplotlib from reading its ``$`` signs as
mathematics, where a name such as ``$x^2$.npz`` would be typeset or, malformed,
stop the figure.
"""


def shown(text):
    """``text`` as it can be printed and written as UTF-8: a file name's bytes that
    are not UTF-8 appear as backslash escapes."""
    return str(text).encode("utf-8", "backslashreplace").decode("utf-8")


def plain(text):
    """``shown(text)`` for matplotlib, which reads text between two ``$`` signs as
    mathematics: each ``$`` escaped, the text is drawn as it reads."""
    return shown(text).replace("$", r"\$")
