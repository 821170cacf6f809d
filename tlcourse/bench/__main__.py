"""``python -m tlcourse.bench``: see :mod:`tlcourse.bench`."""

from tlcourse.bench import main

main()
