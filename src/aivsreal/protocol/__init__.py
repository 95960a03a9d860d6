"""The fixed evaluation protocol of issue #14 (see docs/protocol.md).

Leave one family out, leave one real group out, aligned pairs, the external check set (whole files,
every look logged) and the test split, each in the clean/web/hard tiers, at each model's card threshold.
Modules: ``spec`` (configs/protocol.yaml), ``pool`` (manifests, test fakes, pairs), ``score``, ``runner``,
``report``, ``cli``. Nothing heavy is imported here, so ``aivsreal --help`` stays fast.
"""
