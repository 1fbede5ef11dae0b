"""OpenOCR's ratio-bucketed LMDB datasets, reading only the samples of a data list (:mod:`textssr.str.data_list`).

``Listed<name>`` is OpenOCR's dataset ``<name>`` — ``RatioDataSet`` (cv2: BGR, bilinear) or
``RatioDataSetTVResize`` (PIL: RGB, bicubic), for training, and their ``...Test`` twins for evaluation: the one the
recogniser's YAML names, so that a checkpoint is evaluated on input prepared as it was trained — the same
decoding, transforms, resizing, ratio buckets and ``RatioSampler``, with three methods replaced: which LMDB indices
exist (the checked list, not ``1..num-samples``), which are drawn per epoch, and each sample's width/height (from
the list: no image is opened at start-up). The test datasets give each label normalised as OpenOCR's test sets
normalise it (:func:`textssr.str.data_list.scored_label`). Dataset config keys beside
OpenOCR's: ``data_lists`` (one ``.npz`` per ``data_dir_list`` entry) and ``samples_per_epoch`` (None: each source
contributes ``ratio × its samples`` per epoch, OpenOCR's ``ratio_list`` rule; an int: exactly that many samples
per epoch in the same proportions — drawn afresh each epoch — so runs on sources of different sizes train the same
number of steps).

This module is imported by :func:`textssr.str.openocr_glue.import_openocr`, which puts OpenOCR's folder on
``sys.path`` and registers both names in OpenOCR's ``tools.data.DATASET_MODULES``.
"""
from __future__ import annotations

import random

import numpy as np

from textssr.str import data_list as dl
from textssr.str import process_group
from textssr.str.openocr_glue import import_openocr

import_openocr(register=False)  # DataLoader workers started by "spawn" import this module afresh

from tools.data.ratio_dataset import RatioDataSet  # noqa: E402  (OpenOCR, found through import_openocr)
from tools.data.ratio_dataset_test import RatioDataSetTest  # noqa: E402
from tools.data.ratio_dataset_tvresize import RatioDataSetTVResize  # noqa: E402
from tools.data.ratio_dataset_tvresize_test import RatioDataSetTVResizeTest  # noqa: E402
from tools.data.ratio_sampler import RatioSampler  # noqa: E402


def read_list(path: str):
    with np.load(path, allow_pickle=False) as a:
        return a["indices"].astype(np.int64), a["wh"].astype(np.float64)


class _ListedSamples:
    """The three replaced methods; ``self._lists`` holds (indices, wh) per source."""

    def _read_lists(self, config, mode, epoch):
        dataset = config[mode]["dataset"]
        self._lists = [read_list(p) for p in dataset["data_lists"]]
        self._samples_per_epoch = dataset.get("samples_per_epoch")
        self._epoch = epoch
        self._seed = int(config["Global"].get("seed", 0))

    def load_hierarchical_lmdb_dataset(self, data_dir_list, ratio_list):
        sets = {}
        for n, (path, ratio) in enumerate(zip(data_dir_list, ratio_list)):
            env = dl.environment(path)  # py-lmdb opens a file once per process; OpenOCR rebuilds datasets
            size = int(self._lists[n][0].size)
            sets[n] = {"dirpath": path, "env": env, "txn": env.begin(write=False), "num_samples": size,
                       "ratio_num_samples": int(ratio * size)}
        return sets

    def _draw_counts(self):
        counts = [s["ratio_num_samples"] for s in self.lmdb_sets.values()]
        if not self._samples_per_epoch or not sum(counts):
            return counts
        total = sum(counts)
        shares = [self._samples_per_epoch * c / total for c in counts]
        out = [int(s) for s in shares]
        for i in sorted(range(len(shares)), key=lambda i: out[i] - shares[i])[:self._samples_per_epoch - sum(out)]:
            out[i] += 1  # largest remainders: the counts add up to samples_per_epoch exactly
        return out

    def dataset_traversal(self):
        # the same draw on every rank (each then takes its share): a generator of the seed and epoch alone
        rng = random.Random(self._seed * 100003 + self._epoch)
        rows, wh = [], []
        for n, count in enumerate(self._draw_counts()):
            indices, sizes = self._lists[n]
            if count <= indices.size:
                picks = rng.sample(range(indices.size), count)
            else:  # a source smaller than its share: every sample, then random repeats
                picks = list(range(indices.size)) + rng.choices(range(indices.size), k=count - indices.size)
            picks = np.asarray(picks, np.int64)
            rows.append(np.stack([np.full(picks.size, n), indices[picks]], 1))
            wh.append(sizes[picks])
        self._wh = np.concatenate(wh) if wh else np.zeros((0, 2))
        return np.concatenate(rows).astype(np.float64) if rows else np.zeros((0, 2))

    def get_wh_ratio(self, *test_args):
        ratios = (self._wh[:, 0] / self._wh[:, 1]).tolist()
        if test_args:  # RatioDataSetTest's signature: (order list, charset) → (ratios, filtered order list)
            return ratios, test_args[0]
        return ratios


def _training(base):
    class Listed(_ListedSamples, base):
        def __init__(self, config, mode, logger, seed=None, epoch=1, task="rec"):
            self._read_lists(config, mode, epoch)
            super().__init__(config, mode, logger, seed, epoch=epoch, task=task)
            if self._samples_per_epoch:
                self.need_reset = True  # OpenOCR rebuilds the loader each epoch: a fresh draw

    Listed.__name__ = Listed.__qualname__ = f"Listed{base.__name__}"
    return Listed


def _testing(base):
    class Listed(_ListedSamples, base):
        def __init__(self, config, mode, logger, seed=None, epoch=1, task="rec"):
            self._read_lists(config, mode, epoch)
            g = config["Global"]
            self._charset = dl.read_charset(g["character_dict_path"], g.get("use_space_char", False))
            super().__init__(config, mode, logger, seed, epoch=epoch, task=task)

        def get_lmdb_sample_info(self, txn, index):
            image = txn.get(dl.key("image", index))
            label = dl.scored_label(bytes(txn.get(dl.key("label", index))).decode("utf-8"), self._charset,
                                  self.max_text_length)[0]
            return image, label

    Listed.__name__ = Listed.__qualname__ = f"Listed{base.__name__}"
    return Listed


ListedRatioDataSet = _training(RatioDataSet)
ListedRatioDataSetTVResize = _training(RatioDataSetTVResize)
ListedRatioDataSetTest = _testing(RatioDataSetTest)
ListedRatioDataSetTVResizeTest = _testing(RatioDataSetTVResizeTest)
DATASETS = {c.__name__: c for c in (ListedRatioDataSet, ListedRatioDataSetTVResize, ListedRatioDataSetTest,
                                    ListedRatioDataSetTVResizeTest)}


class NumpyAugment:
    """One of OpenOCR's augmentation ops on numpy images (``op``: SVTRAug, ABINetAug, PARSeqAug) applied to an
    image its PIL loader decoded (``DecodeImagePIL``), as an array and back."""

    def __init__(self, op, **global_config):
        from openrec.preprocess import dynamic_import
        self.op = dynamic_import(op)(**global_config)

    def __call__(self, data):
        from PIL import Image
        data["image"] = np.asarray(data["image"])
        data = self.op(data)
        if data is not None:
            data["image"] = Image.fromarray(np.ascontiguousarray(data["image"]))
        return data


class ListedRatioSampler(RatioSampler):
    """OpenOCR's RatioSampler with three fixes. In a distributed run it shares the training samples among the
    ranks of the process group (OpenOCR's counts GPUs, so on CPUs every rank trained on everything), and every rank
    takes the same number of batches per epoch — the fewest any rank has (buckets of aspect ratios split unevenly;
    a rank with one batch more would wait for the others forever in DDP's gradient reduction). Its trainer sets
    ``sampler.resume_iter`` before rebuilding the loader of an epoch drawn afresh (``ratio_list`` < 1, or
    ``samples_per_epoch``), which RatioSampler does not accept: dropped. And its ``create_batch`` loses every sample of an aspect-ratio bucket whose size is an exact multiple
    (> 1) of the batch size — in training a whole bucket's steps, in evaluation a bucket's test samples: replaced by
    the same batching without that case (full batches of the bucket, then its remainder; in training the remainder
    is topped up from the bucket's start, as OpenOCR does)."""

    def __init__(self, data_source, resume_iter=0, **options):
        super().__init__(data_source, **options)
        import torch.distributed as dist
        if self.is_training and dist.is_initialized():
            self.rank, self.num_replicas = dist.get_rank(), dist.get_world_size()
            mine = self.img_indices[self.rank::self.num_replicas]
            self.indices_rank_i_ori = np.array(self.wh_ratio_sort[mine])
            self.indices_rank_i_ratio = self.wh_ratio[self.indices_rank_i_ori]
            self.indices_rank_i_ratio_unique = np.unique(self.indices_rank_i_ratio).tolist()
            self.batch_list = self.create_batch()
            self.length = process_group.agree_min(len(self.batch_list))

    def __iter__(self):
        if self.shuffle or self.is_training:
            random.seed(self.epoch)
            self.epoch += 1
            self.batch_list = self.create_batch()
            order = list(range(len(self.batch_list)))
            random.shuffle(order)
        else:
            order = list(range(len(self.batch_list)))
        for i in order[:self.length]:
            yield self.batch_list[i]

    def create_batch(self):
        batches = []
        for ratio in self.indices_rank_i_ratio_unique:
            ids = self.indices_rank_i_ori[np.where(self.indices_rank_i_ratio == ratio)[0]]
            if self.shuffle:
                random.shuffle(ids)
            size = self.base_batch_size if ratio < 5 else min(
                self.max_bs, int(max(1, self.base_elements / (self.base_im_h * ratio * self.base_im_h))))
            ids = list(ids)
            for start in range(0, len(ids), size):
                chunk = ids[start:start + size]
                if len(chunk) < size and self.is_training and len(ids) > size:
                    chunk = ids[:size - len(chunk)] + chunk
                r = int(ratio)  # OpenOCR's items are ints: [width, height, sample, ratio bucket]
                batches.append([[r * int(self.base_im_h), int(self.base_im_h), int(i), r] for i in chunk])
        return batches
