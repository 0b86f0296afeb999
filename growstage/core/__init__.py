"""The numpy core: values dicts, block-wise resize, growth maps, rename rules, errors and the
vocabulary.  Imports numpy and the standard library only."""
