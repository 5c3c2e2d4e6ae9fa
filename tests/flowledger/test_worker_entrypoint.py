"""`flowledger worker MODULE:CLASS`: what it says when MODULE:CLASS names no workflow."""

from __future__ import annotations

import pytest

from flowledger.worker import EntrypointError, load_entrypoint


def test_a_missing_class_is_named_as_missing_not_as_the_wrong_kind() -> None:
    with pytest.raises(EntrypointError) as raised:
        load_entrypoint("examples.checkout:Nope")
    assert str(raised.value) == "module 'examples.checkout' has no attribute 'Nope'"


def test_a_module_that_cannot_be_imported_says_so() -> None:
    with pytest.raises(EntrypointError, match=r"^cannot import 'examples\.nowhere': No module"):
        load_entrypoint("examples.nowhere:Checkout")


def test_something_that_is_not_a_workflow_keeps_its_message() -> None:
    with pytest.raises(EntrypointError, match="is not a subclass of flowledger.workflows"):
        load_entrypoint("examples.checkout:NonRetryableError")
