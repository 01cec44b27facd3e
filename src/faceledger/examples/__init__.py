"""The bundled example photo (public domain; see README.md beside this file), for the demo, docs and tests."""

from pathlib import Path

ASTRONAUT = Path(__file__).with_name("astronaut.jpg")
"""Eileen Collins, NASA photograph, public domain: one face, frontal."""

__all__ = ["ASTRONAUT"]
