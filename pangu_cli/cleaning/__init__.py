"""The pieces of `pangu data-clean` (stages/data_clean.py), one concern per module.

inputs      read Arrow / Parquet / .txt / .jsonl(.gz/.zst) documents
normalize   Unicode repair, ANSI and control codes, HTML to text, boilerplate lines
filters     which rule sets run on which domain, with which thresholds
gopher      Gopher quality and repetition rules
c4          C4 rules (the one rule set that drops lines)
fineweb     FineWeb rules
words       words in any script (a CJK character is one), stop words, end punctuation
langid      language and confidence from a model shipped inside py3langid
dedup       exact hashes and MinHash LSH signatures, the global bucket merge
pii         e-mail, phone and IP placeholders
quality     rule-based features and a model score (bits per byte under a pangu checkpoint)
difficulty  a curriculum difficulty per domain
report      the HTML report of what was removed and why
"""
