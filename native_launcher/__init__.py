"""The small layer's native launcher: main.c, built for one architecture by build.py."""
