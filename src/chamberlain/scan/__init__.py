"""Credential scanning: finding secret values that were committed to a repository.

Git holds intent, never runtime values (Inv. 1 and 2), so ``validate`` reads every file of the repository for
credentials. The pieces, each with one job:

- :mod:`.formats` — the provider token formats (about 200 kinds: prefix, alphabet, length), data not code.
- :mod:`.decode` — bytes to text (UTF-8, UTF-16 with a BOM, Latin-1) or a reason to scan raw bytes.
- :mod:`.fingerprint` / :mod:`.baseline` — stable finding fingerprints (file, rule, kind, line; never the value)
  and the baseline file of accepted ones.
- :mod:`.history` — the same scan over every blob Git history ever held.

The check that turns hits into findings (CH024, CH020) is :mod:`chamberlain.checks.secrets`.
"""
