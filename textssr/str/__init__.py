"""Scene-text recognition on the data TextSSR makes: STR LMDB test sets from real crops (:mod:`lmdb_convert`), the
checked sample lists a recogniser trains on (:mod:`data_list`), and the glue that drives OpenOCR's own trainer,
datasets, transforms and metric (:mod:`openocr_glue`; ``train_str.py``). Nothing here imports OpenOCR at module
level: it is an optional install (``make install-str``, docs/str.md)."""
