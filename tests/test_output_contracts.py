"""Output contracts pinned against independent expectations (not against the code under test): original-checkpoint
configs lacking keys, infer's counts and output boxes, the STR LMDB's size key, and synthesis resume counters. Tiny
random models, 32-px regions, one denoising step, real photos."""
import inspect
import json
import os

import lmdb
import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from PIL import Image
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer

from diffusers_textssr import TextSSRUNet2DConditionModel
from textssr.synth.settings import SynthSettings
from textssr.infer.settings import InferSettings
from textssr.config import load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.usefixtures("one_thread")
LONG_TEXT = "cycling" * 4  # 28 characters: longer than max_len = 25


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tiny_models import save_tiny_sd21
    return save_tiny_sd21(str(tmp_path_factory.mktemp("tiny_sd21")))


# ------------------------------------------------------------------------------ original checkpoints, missing keys


def test_original_config_lacking_keys_loads_with_upstream_defaults(tmp_path):
    """An older/incomplete config.json written by the original code (UNet2DConditionModel, in_channels 4) that
    does not name upcast_attention, use_linear_projection and attention_head_dim means what diffusers' own loader
    makes of it — UNet2DConditionModel's defaults — not TextSSR's SD 2.1 defaults."""
    from tiny_models import TINY_UNET_ARCH
    missing = ("upcast_attention", "use_linear_projection", "attention_head_dim")
    upstream = {k: inspect.signature(UNet2DConditionModel.__init__).parameters[k].default for k in missing}
    ttf = {k: v for k, v in TINY_UNET_ARCH.items() if k.startswith("ttf_")}
    plain_arch = {k: v for k, v in TINY_UNET_ARCH.items() if not k.startswith("ttf_") and k not in missing}
    torch.manual_seed(3)
    source = TextSSRUNet2DConditionModel(**plain_arch, **upstream, **ttf).eval()
    state = {k: v.contiguous() for k, v in source.state_dict().items()}

    def write(folder, in_channels, tensors):
        UNet2DConditionModel(**dict(plain_arch, in_channels=in_channels)).save_pretrained(folder)
        config = json.loads((folder / "config.json").read_text())
        for key in missing:
            del config[key]
        (folder / "config.json").write_text(json.dumps(config))
        os.remove(folder / "diffusion_pytorch_model.safetensors")
        save_file(tensors, str(folder / "diffusion_pytorch_model.safetensors"))

    original, plain = tmp_path / "original", tmp_path / "plain"
    write(original, 4, state)  # what the original's save_pretrained wrote: 13-channel conv_in, ttf_net.* keys
    write(plain, 13, {k: v for k, v in state.items() if not k.startswith("ttf_net.")})
    loaded = TextSSRUNet2DConditionModel.from_pretrained(str(original), **ttf).eval()
    reference = UNet2DConditionModel.from_pretrained(str(plain)).eval()  # diffusers' own loader, same config
    for key in missing:
        assert loaded.config[key] == reference.config[key] == upstream[key], key
    vit = VisionTransformer(img_size=64, patch_size=8, in_chans=25, embed_dim=64, depth=2, num_heads=2,
                            qkv_bias=True, num_classes=0, global_pool="").eval()
    vit.load_state_dict({k[len("ttf_net."):]: v for k, v in state.items() if k.startswith("ttf_net.")})
    g = torch.Generator().manual_seed(0)
    sample, t, stack = torch.randn(2, 13, 8, 8, generator=g), torch.tensor([999, 10]), torch.rand(2, 25, 64, 64,
                                                                                                generator=g)
    with torch.no_grad():
        assert torch.equal(loaded(sample, t, stack).sample, reference(sample, t, vit.forward_features(stack)).sample)


# ------------------------------------------------------------------------------ infer: counts, ann_index, boxes


def infer_config(model, bench, out, **extra):
    opts = dict(bench=str(bench), output_dir=str(out), pretrained_vae=f"{model}/vae", pretrained_unet=f"{model}/unet",
                scheduler_path=str(model), resolution=32, num_inference_steps=1, batch_size=4, device="cpu",
                mixed_precision="no")
    opts.update(extra)
    return InferSettings.load(os.path.join(REPO, "configs/tiny/infer_cfg.py"), opts)


@pytest.fixture(scope="module")
def infer_run(tiny_model, bench_mini_dir, tmp_path_factory):
    """infer over 3 real ic13 photos with several words each, plus one text longer than max_len."""
    from textssr.infer import run_inference
    root = tmp_path_factory.mktemp("guard_infer")
    ic13 = json.loads((bench_mini_dir / "benchmark/ic13/test.json").read_text(encoding="utf-8"))
    entries = [ic13["data_list"][i] for i in (1, 2, 4)]  # 6 + 1 + 2 words
    word = entries[1]["annotations"][0]
    entries[1] = dict(entries[1], annotations=[word, dict(word, text=LONG_TEXT)])
    bench = dict(data_root=str(bench_mini_dir / "benchmark/ic13/images"), data_list=entries)
    (root / "bench.json").write_text(json.dumps(bench, ensure_ascii=False), encoding="utf-8")
    cfg = infer_config(tiny_model, root / "bench.json", root / "out")
    return root / "out", run_inference(cfg), bench, cfg


def test_a_text_longer_than_max_len_is_generated_and_counted_as_truncated_not_skipped(infer_run):
    out, meta, bench, _ = infer_run
    labels = json.loads((out / "labels.json").read_text(encoding="utf-8"))
    assert LONG_TEXT in labels.values()
    assert meta["counts"]["skipped"] == 0 and meta["skipped"] == {}
    assert meta["counts"]["text_truncated"] == 1
    assert meta["counts"]["generated"] == meta["counts"]["written"] == sum(len(e["annotations"])
                                                                           for e in bench["data_list"])


def test_instances_ann_index_is_the_0_based_position_in_the_entrys_annotations(infer_run):
    out, _, bench, _ = infer_run
    expected = [dict(file=f"{n}.png", img_name=entry["img_name"], ann_index=k, text=ann["text"])
                for n, (entry, k, ann) in enumerate((e, k, a) for e in bench["data_list"]
                                                    for k, a in enumerate(e["annotations"]))]
    instances = json.loads((out / "instances.json").read_text(encoding="utf-8"))
    assert [{key: row[key] for key in ("file", "img_name", "ann_index", "text")} for row in instances] == expected
    assert any(row["ann_index"] == 0 for row in instances) and max(row["ann_index"] for row in instances) == 5


def test_region_and_gt_are_exactly_the_bbox_of_the_masks_text_pixels(infer_run):
    """region/ and gt/ are local/ and the real crop cut to mask_bbox of the rebuilt sample — no pixel less."""
    from textssr.data import AnyWordDataset, mask_bbox
    from textssr.generation import real_region
    from textssr.infer.runner import instance_seeds
    out, _, _, cfg = infer_run
    dataset = AnyWordDataset(str(out.parent / "bench.json"), seed=cfg.seed, resolution=32, ttf_size=64, max_len=25,
                             font_path=cfg.font_path, region_placement=cfg.region_placement)
    sizes = set()
    for k, number in enumerate(dataset.numbers):
        sample = dataset.build(k, rng=instance_seeds(cfg.seed, number)[0])
        x0, y0, x1, y1 = mask_bbox(sample["mask"])
        local, region, gt = (np.asarray(Image.open(out / sub / f"{number}.png")) for sub in ("local", "region", "gt"))
        assert region.shape == gt.shape == (y1 - y0, x1 - x0, 3), number
        assert np.array_equal(region, local[y0:y1, x0:x1]), number
        assert np.array_equal(gt, real_region(sample)[y0:y1, x0:x1]), number
        sizes.add(region.shape[:2])
    assert len(sizes) > 1


# ------------------------------------------------------------------------------ synthesis: STR LMDB, resume counters


def synth_config(model, source, out, **extra):
    opts = dict(source=str(source), output_dir=str(out), max_regions=None, pretrained_vae=f"{model}/vae",
                pretrained_unet=f"{model}/unet", scheduler_path=f"{model}/scheduler", resolution=32,
                num_inference_steps=1, batch_size=2, variants_per_region=2)
    opts.update(extra)
    return SynthSettings.load(os.path.join(REPO, "configs/tiny/synth_cfg.py"), opts)


@pytest.fixture(scope="module")
def synth_source(bench_mini_dir, tmp_path_factory):
    """6 real regions and, second, one whose image is missing (a skipped region)."""
    ic13 = json.loads((bench_mini_dir / "benchmark/ic13/test.json").read_text(encoding="utf-8"))
    one_word, two_words, many = (ic13["data_list"][i] for i in (2, 4, 1))
    entries = [one_word, {"img_name": "no_such_image.jpg", "annotations": one_word["annotations"]}, two_words,
               dict(many, annotations=many["annotations"][:3])]
    path = tmp_path_factory.mktemp("guard_synth") / "source.json"
    path.write_text(json.dumps(dict(data_root=str(bench_mini_dir / "benchmark/ic13/images"), data_list=entries)),
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def synth_baseline(tiny_model, synth_source):
    from textssr.synth.runner import synthesize
    out = synth_source.parent / "baseline"
    return out, synthesize(synth_config(tiny_model, synth_source, out))


def str_records(path):
    from textssr.synth.str_lmdb import StrLmdbReader
    with StrLmdbReader(str(path)) as reader:
        return [(r.image, r.label, r.wh, r.meta["region"], r.meta["variant"]) for r in reader]


def test_str_lmdb_wh_key_is_width_underscore_height_of_the_stored_crop(synth_baseline):
    """OpenOCR reads ``wh-%09d`` as "W_H": check the raw key against each stored image's own size."""
    from textssr.synth.str_lmdb import decode_image
    out, stats = synth_baseline
    env = lmdb.open(str(out / "lmdb"), readonly=True, lock=False)
    sizes = []
    with env.begin() as txn:
        n = int(txn.get(b"num-samples"))
        for i in range(1, n + 1):
            h, w = decode_image(txn.get(b"image-%09d" % i)).shape[:2]
            assert txn.get(b"wh-%09d" % i) == f"{w}_{h}".encode(), i
            sizes.append((w, h))
    env.close()
    assert n == stats["kept"] > 0 and any(w != h for w, h in sizes)


COUNT_KEYS = ("regions_read", "items", "generated", "kept", "rejected", "skipped", "skipped_items",
              "skipped_at_index", "texts", "num_samples", "processes")


def test_synthesis_resumed_after_an_interruption_continues_its_counters(tiny_model, synth_source, synth_baseline,
                                                                         monkeypatch):
    """Interrupted (Ctrl-C) after two committed batches, then rerun: stats.json counts what an uninterrupted run
    counts (the resumed shard continues from the counters in its LMDB state), and the records are the same."""
    from textssr.synth.runner import synthesize
    from textssr.synth.str_lmdb import StrLmdbReader, StrLmdbWriter
    out = synth_source.parent / "interrupted"
    real_commit, commits = StrLmdbWriter.commit, []

    def commit_then_interrupt(self, records, state=None):
        real_commit(self, records, state)
        commits.append(state["cursor"])
        if len(commits) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(StrLmdbWriter, "commit", commit_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        synthesize(synth_config(tiny_model, synth_source, out))
    monkeypatch.setattr(StrLmdbWriter, "commit", real_commit)
    with StrLmdbReader(str(out / "lmdb")) as reader:
        state = reader.state
    assert not state["done"] and state["counters"]["items"] == state["cursor"] == commits[-1] > 0
    assert state["skipped"] == {"image_missing": 1}  # the bad region was met before the interruption
    resumed = synthesize(synth_config(tiny_model, synth_source, out))
    baseline_dir, baseline = synth_baseline
    saved = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    expected = json.loads((baseline_dir / "stats.json").read_text(encoding="utf-8"))
    assert {k: saved[k] for k in COUNT_KEYS} == {k: expected[k] for k in COUNT_KEYS}
    assert {k: resumed[k] for k in COUNT_KEYS} == {k: baseline[k] for k in COUNT_KEYS}
    assert expected["items"] == 14 and expected["skipped_items"] == 2 and expected["generated"] == 12
    assert str_records(out / "lmdb") == str_records(baseline_dir / "lmdb")
