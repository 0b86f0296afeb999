"""The docstrings say what the README promises (issue 12, item 10)."""
import pydoc

import growstage


def test_transfer_says_its_default_mode():
    assert 'default ``mode`` is ``"exact"``' in growstage.transfer.__doc__


def test_preloads_doc_is_reachable_and_complete():
    assert "see the module doc" not in growstage.preload.__doc__
    assert "growstage.interop.preloading" in growstage.preload.__doc__
    text = pydoc.render_doc(growstage.preload.__module__, renderer=pydoc.plaintext)
    for key in ("prefix", "init_for_train", "ignore_params_prefixes", "var_name_mapping", "only"):
        assert key in text, key


def test_init_from_checkpoint_describes_the_map_syntax():
    doc = growstage.init_from_checkpoint.__doc__
    for form in ("'old_scope/': 'new_scope/'", "'old/': '/'", "'/': 'scope/'", "'ckpt/name': 'layer/param'"):
        assert form in doc, form


def test_fit_describes_checkpoints_and_resume():
    doc = growstage.fit.__doc__
    for word in ("``checkpoint_dir``", "``resume=True``", "``keep``", "count from 0"):
        assert word in doc, word
