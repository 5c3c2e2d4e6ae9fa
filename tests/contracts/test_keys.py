from __future__ import annotations

import uuid

from contracts.keys import instance_global_id, instance_key, is_minted_shape, minted_instance_id


def test_global_id_is_stable_and_distinct_per_instance_key() -> None:
    suffix = uuid.uuid4().hex
    a = instance_global_id("acc", "wf", f"i-{suffix}")
    assert a == instance_global_id("acc", "wf", f"i-{suffix}")
    assert a != instance_global_id("acc", "wf2", f"i-{suffix}")
    assert instance_key("acc", "wf", "i") == "acc/wf/i"


def test_minted_id_is_reserved_shape_and_derived_from_the_command() -> None:
    command_id = str(uuid.uuid4())
    minted = minted_instance_id(command_id)
    assert minted == minted_instance_id(command_id)
    assert minted.startswith("cf_") and len(minted) == 67
    assert all(ch in "0123456789abcdef" for ch in minted[3:])


def test_only_the_exact_minted_shape_counts_as_minted() -> None:
    assert is_minted_shape(minted_instance_id(str(uuid.uuid4())))
    minted = minted_instance_id(str(uuid.uuid4()))
    for near_miss in (minted.upper(), minted[:-1], minted + "0", "cf_order-42", "x" + minted):
        assert not is_minted_shape(near_miss), near_miss
