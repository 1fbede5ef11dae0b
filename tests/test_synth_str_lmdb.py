"""STR LMDB layout (the keys STR loaders read), read-back, atomic commits and the shard merge."""
import lmdb
import numpy as np

from textssr.data.lmdb_store import find_environments
from textssr.synth.str_lmdb import (StrLmdbReader, StrLmdbWriter, StrRecord, decode_image, encode_crop,
                                    merge_str_lmdbs)


def _crop(value, w=12, h=5):
    return np.full((h, w, 3), value, np.uint8)


def test_layout_is_what_str_loaders_read(tmp_path):
    path = str(tmp_path / "lmdb")
    with StrLmdbWriter(path) as w:
        w.commit([StrRecord(encode_crop(_crop(10)), "HOTEL", (12, 5)),
                  StrRecord(encode_crop(_crop(200), "jpg"), "咖啡", (12, 5), {"region": 3})], {"cursor": 2})
    # Read it the way deep-text-recognition-benchmark / OpenOCR do: raw keys, 1-based, num-samples.
    env = lmdb.open(path, readonly=True, lock=False)
    with env.begin() as txn:
        assert txn.get(b"num-samples") == b"2"
        assert txn.get(b"label-000000001").decode("utf-8") == "HOTEL"
        assert txn.get(b"label-000000002").decode("utf-8") == "咖啡"
        assert txn.get(b"wh-000000002") == b"12_5"
        assert txn.get(b"image-000000001")[:8] == b"\x89PNG\r\n\x1a\n"
        assert txn.get(b"image-000000002")[:2] == b"\xff\xd8"  # JPEG
        assert txn.get(b"image-000000000") is None and txn.get(b"label-000000003") is None
    env.close()
    assert find_environments(str(tmp_path)) == [path]  # the one LMDB discovery, as the loaders find them


def test_append_resumes_after_last_sample_and_reads_back(tmp_path):
    path = str(tmp_path / "lmdb")
    with StrLmdbWriter(path) as w:
        w.commit([StrRecord(encode_crop(_crop(1)), "A", (12, 5))], {"cursor": 1})
    with StrLmdbWriter(path) as w:  # reopened: continues at 2, state read back
        assert w.num_samples == 1 and w.state == {"cursor": 1}
        w.commit([StrRecord(encode_crop(_crop(2)), "B", (12, 5))], {"cursor": 2})
    with StrLmdbReader(path) as r:
        assert len(r) == 2 and r.state == {"cursor": 2}
        recs = list(r)
    assert [x.label for x in recs] == ["A", "B"]
    assert (decode_image(recs[1].image) == _crop(2)).all() and recs[1].wh == (12, 5)


def test_map_grows_instead_of_failing(tmp_path, monkeypatch):
    import textssr.synth.str_lmdb as mod
    monkeypatch.setattr(mod, "_INITIAL_MAP_SIZE", 64 * 1024)
    path = str(tmp_path / "lmdb")
    noise = np.random.default_rng(0).integers(0, 255, (64, 256, 3), dtype=np.uint8)
    with StrLmdbWriter(path) as w:
        w.commit([StrRecord(encode_crop(noise), f"w{i}", (256, 64)) for i in range(5)])
    with StrLmdbReader(path) as r:
        assert len(r) == 5 and r.record(5).label == "w4"


def test_merge_orders_by_key_across_shards(tmp_path):
    shards = []
    for rank, regions in enumerate([[0, 2, 4], [1, 3]]):
        path = str(tmp_path / f"rank{rank}")
        with StrLmdbWriter(path) as w:
            w.commit([StrRecord(encode_crop(_crop(r)), f"t{r}", (12, 5), {"region": r, "variant": 0})
                      for r in regions])
        shards.append(path)
    dest = str(tmp_path / "merged")
    n = merge_str_lmdbs(shards, dest, order=lambda rec: (rec.meta["region"], rec.meta["variant"]),
                        state={"done": True}, chunk=2)
    with StrLmdbReader(dest) as r:
        assert n == len(r) == 5 and r.state == {"done": True}
        assert [x.label for x in r] == ["t0", "t1", "t2", "t3", "t4"]
