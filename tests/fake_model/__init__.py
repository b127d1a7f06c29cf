"""A scripted fake model server on 127.0.0.1 for driving the real agent CLIs in tests."""
from tests.fake_model.server import FakeModel

__all__ = ["FakeModel"]
