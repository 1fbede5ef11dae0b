"""method.md §3 conventions of the samples built from real photos (ICDAR15 toy, TextSSR benchmark mini)."""
import json
import warnings

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from textssr.data import AnyWordDataset, collate, mask_bbox, render_glyph, render_ttf_img, resolve_font
from textssr.data import geometry
from textssr.data.fonts import load_font, text_size
from textssr.data.icdar15 import convert_icdar15
from textssr.data.render import ttf_gray_levels

R, TTF, MAX_LEN = 256, 64, 25


@pytest.fixture(scope="module")
def font():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return resolve_font("AlibabaPuHuiTi-3-85-Bold.ttf")


@pytest.fixture(scope="module")
def ic15_json(icdar15_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ic15") / "test.json"
    convert_icdar15(str(icdar15_dir), None, str(out))
    return str(out)


def make_dataset(paths, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AnyWordDataset(paths, **kw)


@pytest.fixture(scope="module")
def all_samples(ic15_json, bench_mini_dir):
    ds = make_dataset([ic15_json, str(bench_mini_dir / "benchmark/ic13/test.json"),
                       str(bench_mini_dir / "benchmark/shopsign/test.json")])
    return ds, [ds[i] for i in range(len(ds))]


def test_sample_shapes_ranges_and_conventions(all_samples):
    ds, samples = all_samples
    assert len(samples) == 21 + 38 + 70
    for i, s in enumerate(samples):
        assert set(s) == {"image", "mask", "masked_image", "glyph", "ttf_img", "text", "index"} and s["index"] == i
        assert s["image"].shape == (3, R, R) and s["image"].dtype == torch.float32
        for key in ("image", "mask", "masked_image", "glyph", "ttf_img"):  # no hidden planes to ship to workers
            assert s[key].untyped_storage().nbytes() == s[key].numel() * 4, key
        assert -1.0 <= s["image"].min() and s["image"].max() <= 1.0
        assert s["mask"].shape == (1, R, R) and set(s["mask"].unique().tolist()) <= {0.0, 1.0}
        assert (s["mask"] == 0).any() and (s["mask"] == 1).any()  # text area is 0, context 1
        assert torch.equal(s["masked_image"], s["image"] * s["mask"])
        assert (s["masked_image"][:, s["mask"][0] == 0] == 0).all()
        assert s["glyph"].shape == (3, R, R)
        assert set(s["glyph"].unique().tolist()) <= {float(np.float32(127 / 255)), 1.0} and (s["glyph"] < 1).any()
        assert s["ttf_img"].shape == (MAX_LEN, TTF, TTF) and 0 <= s["ttf_img"].min() and s["ttf_img"].max() <= 1


def test_ttf_channels_gray_levels_and_unused_white(all_samples):
    _, samples = all_samples
    for s in samples:
        n = min(len(s["text"]), MAX_LEN)
        ttf = s["ttf_img"]
        assert (ttf[n:] == 1.0).all()
        for i in range(n):
            if s["text"][i].isspace():
                continue
            darkest = ttf[i].min().item()
            assert darkest == pytest.approx((128 // MAX_LEN) * i / 255, abs=1e-6), (s["text"], i)


def test_ttf_img_equals_direct_pillow_drawing(font):
    """The cached-coverage blend reproduces drawing every character with Pillow at its gray level."""
    text = "Genaxis点穴g"
    ours = render_ttf_img(text, font, TTF, MAX_LEN)
    pil_font = load_font(font, int(0.8 * TTF))
    for i, c in enumerate(text):
        img = Image.new("L", (TTF, TTF), 255)
        w, h = text_size(pil_font, c)
        ImageDraw.Draw(img).text(((TTF - w) // 2, (TTF - h) // 2), c, font=pil_font, fill=int(ttf_gray_levels(MAX_LEN)[i]))
        np.testing.assert_array_equal(ours[i], np.asarray(img, np.float32) / 255.0)


def test_glyph_ink_lies_in_text_area(all_samples):
    """The glyph fills the text area's min-area rectangle: ≥ 90 % of its ink is in the text area overall;
    per sample ≥ 75 % (a trapezoid polygon, e.g. shopsign's YUANANLONG, leaves part of its rectangle out)."""
    _, samples = all_samples
    total_ink = total_inside = 0
    for s in samples:
        ink = s["glyph"][0] < 1
        inside = (ink & (s["mask"][0] == 0)).sum().item()
        assert inside / ink.sum().item() >= 0.75, (s["text"], inside / ink.sum().item())
        total_ink, total_inside = total_ink + ink.sum().item(), total_inside + inside
    assert total_inside / total_ink >= 0.9


def test_crop_window_contains_polygon_and_stays_in_extent(ic15_json):
    ds = make_dataset(ic15_json)
    rng = np.random.default_rng(0)
    for i in range(len(ds)):
        polygon = ds.polygon(i)
        image, extent = ds.images.load(*ds._record(i)[:2])
        bbox = geometry.polygon_bbox(polygon)
        for _ in range(20):
            x0, y0, x1, y1 = geometry.square_window(extent, bbox, rng)
            assert x0 <= bbox[0] and y0 <= bbox[1] and x1 >= min(bbox[2], extent[2]) and y1 >= min(bbox[3], extent[3])
            assert extent[0] <= x0 and extent[1] <= y0 and x1 <= extent[2] and y1 <= extent[3]
            assert x1 - x0 == y1 - y0 == max(bbox[2] - bbox[0], bbox[3] - bbox[1])  # 1280×720: always square


def test_center_placement_is_deterministic_and_centred(ic15_json):
    ds = make_dataset(ic15_json, region_placement="center")
    a, b = ds.build(3, rng=np.random.default_rng(1)), ds.build(3, rng=np.random.default_rng(2))
    assert torch.equal(a["image"], b["image"])
    x0, y0, x1, y1 = mask_bbox(a["mask"])
    assert abs((x0 + x1) / 2 - R / 2) < 8 and abs((y0 + y1) / 2 - R / 2) < 8


def test_streams_differ_between_samples_and_repeat_under_seed(bench_mini_dir):
    path = str(bench_mini_dir / "benchmark/ic13/test.json")
    a, b, c = make_dataset(path, seed=1), make_dataset(path, seed=1), make_dataset(path, seed=2)
    draws = [a.sample_rng(i).integers(1 << 30) for i in range(8)]
    assert len(set(draws)) == 8  # every sample (hence every worker / rank) has its own stream
    for i in range(len(a)):
        assert torch.equal(a[i]["image"], b[i]["image"])
    assert any(not torch.equal(a[i]["image"], c[i]["image"]) for i in range(len(a)))
    a.set_epoch(1)
    assert any(not torch.equal(a[i]["image"], b[i]["image"]) for i in range(len(a)))


def test_dataloader_workers_match_single_process(bench_mini_dir):
    ds = make_dataset(str(bench_mini_dir / "benchmark/ic13/test.json"), seed=5)
    single = [ds[i]["image"] for i in range(8)]
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, range(8)), batch_size=4, num_workers=2,
                                         collate_fn=collate)
    images = torch.cat([batch["image"] for batch in loader])
    assert torch.equal(images, torch.stack(single))


def test_vertical_text_runs_along_the_long_side(icdar15_dir, tmp_path, font):
    tall = [[600, 100], [640, 100], [640, 400], [600, 400]]
    data = {"data_root": str(icdar15_dir), "data_list": [
        {"img_name": "img_1.jpg", "annotations": [{"polygon": tall, "text": "VERTICAL", "language": "Latin"}]}]}
    (tmp_path / "v.json").write_text(json.dumps(data))
    s = make_dataset(str(tmp_path / "v.json"), region_placement="center")[0]
    ink = s["glyph"][0] < 1
    ys, xs = np.nonzero(ink.numpy())
    assert np.ptp(ys) > 3 * np.ptp(xs)  # the word is laid out top to bottom
    assert (ink & (s["mask"][0] == 0)).sum() / ink.sum() >= 0.9


def test_glyph_corners_follow_opencv_4_convention_whatever_opencv_returns():
    wide_4x = ((128.0, 128.0), (40.0, 200.0), 90.0)  # OpenCV 4.5–4.12 for an axis-aligned wide box
    wide_5x = ((128.0, 128.0), (40.0, 200.0), -90.0)  # OpenCV ≥ 4.13
    expected = np.float32([[28, 108], [228, 108], [228, 148], [28, 148]])  # TL, TR, BR, BL: upright
    np.testing.assert_allclose(geometry.glyph_corners(wide_4x), expected, atol=1e-3)
    np.testing.assert_allclose(geometry.glyph_corners(wide_5x), expected, atol=1e-3)
    tall = ((128.0, 128.0), (200.0, 40.0), 90.0)
    np.testing.assert_allclose(geometry.glyph_corners(tall), [[148, 28], [148, 228], [108, 228], [108, 28]], atol=1e-3)


def test_min_area_rect_matches_opencv_on_all_pixels():
    rng = np.random.default_rng(0)
    for _ in range(50):
        mask = np.ones((R, R), np.uint8)
        cv2.fillPoly(mask, [rng.integers(0, R, (5, 2)).astype(np.int32)], 0)
        ys, xs = np.nonzero(mask == 0)
        if xs.size:
            assert geometry.min_area_rect(mask) == cv2.minAreaRect(np.stack([xs, ys], 1).astype(np.int32))


def test_cjk_text_from_shopsign(bench_mini_dir, font):
    ds = make_dataset(str(bench_mini_dir / "benchmark/shopsign/test.json"))
    chinese = [i for i in range(len(ds)) if ds.instance_info(i)["language"] == "Chinese"]
    assert chinese
    s = ds[chinese[0]]
    assert any("\u4e00" <= c <= "\u9fff" for c in s["text"])
    for i, c in enumerate(s["text"]):  # every CJK character draws real ink, not tofu or nothing
        assert (s["ttf_img"][i] < 1).sum() > 50


def test_render_glyph_and_mask_bbox_helpers(font):
    rect = ((128.0, 128.0), (40.0, 200.0), 90.0)
    glyph = render_glyph("EXIT", rect, font, TTF, R)
    assert glyph.shape == (3, R, R) and glyph.dtype == np.float32
    ys, xs = np.nonzero(glyph[0] < 1)
    assert 20 <= xs.min() and xs.max() <= 236 and 100 <= ys.min() and ys.max() <= 156
    mask = torch.ones(1, R, R)
    mask[0, 10:20, 30:50] = 0
    assert mask_bbox(mask) == (30, 10, 50, 20) and mask_bbox(mask[0].numpy()) == (30, 10, 50, 20)


def test_collate_stacks_and_merges_skips(all_samples):
    _, samples = all_samples
    a = dict(samples[0], skipped=[(7, "image_unreadable")])
    b = dict(samples[1], skipped=[(8, "image_unreadable"), (9, "empty_extent")])
    batch = collate([a, b, samples[2]])
    assert batch["image"].shape == (3, 3, R, R) and batch["text"] == [s["text"] for s in samples[:3]]
    assert batch["index"].tolist() == [0, 1, 2] and batch["index"].dtype == torch.int64
    assert batch["skipped"] == {"image_unreadable": 2, "empty_extent": 1}
    assert batch["skipped_instances"] == {7: "image_unreadable", 8: "image_unreadable", 9: "empty_extent"}
    assert collate(samples[:2])["skipped"] == {} and collate(samples[:2])["skipped_instances"] == {}


def test_vae_mode_returns_only_image(ic15_json):
    s = make_dataset(ic15_json, vae_mode=True)[0]
    assert set(s) == {"image", "index"} and s["image"].shape == (3, R, R)


def test_decoded_photos_equal_pillows_pixels(icdar15_dir, bench_mini_dir):
    """The fast JPEG path (simplejpeg) gives exactly the pixels of Pillow, which the original decodes with."""
    from textssr.data.image_io import decode_image
    paths = sorted(icdar15_dir.glob("*.jpg")) + sorted(bench_mini_dir.rglob("*.jpg"))[:20]
    assert len(paths) >= 20
    for path in paths:
        ours = decode_image(path.read_bytes(), str(path))[..., ::-1]
        assert np.array_equal(ours, np.asarray(Image.open(path).convert("RGB"))), path


@pytest.mark.parametrize("variant", ["420", "444", "progressive", "gray", "cmyk", "png"])
def test_decode_variants_equal_opencv(variant):
    """Every JPEG flavour simplejpeg takes decodes as OpenCV decodes it; what it refuses goes to OpenCV."""
    import io

    from textssr.data.image_io import decode_image
    rgb = cv2.GaussianBlur((np.random.default_rng(0).random((67, 93, 3)) * 255).astype(np.uint8), (5, 5), 2)
    pil, buf = Image.fromarray(rgb), io.BytesIO()
    if variant == "png":
        pil.save(buf, "PNG")
    else:
        mode = {"gray": "L", "cmyk": "CMYK"}.get(variant, "RGB")
        pil.convert(mode).save(buf, "JPEG", quality=90, progressive=variant == "progressive",
                               subsampling=0 if variant == "444" else -1)
    data = buf.getvalue()
    expected = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    ours = decode_image(data, variant)
    assert ours.shape == (67, 93, 3) and ours.dtype == np.uint8 and np.array_equal(ours, expected)


@pytest.mark.parametrize("resolution", [256, 48])  # 256: words are upsampled; 48: downsampled (antialiased)
def test_image_and_mask_match_the_originals_torchvision_pipeline(ic15_json, resolution):
    """image and mask as the original computes them: Pillow decode, ToTensor → Normalize(0.5, 0.5) → Resize
    (antialias) of the crop; the polygon drawn with Pillow on the full image, cut, resized, thresholded."""
    import torchvision.transforms as T

    ds = make_dataset(ic15_json, resolution=resolution, region_placement="center")
    to_image = T.Compose([T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3),
                          T.Resize((resolution, resolution), antialias=True)])
    to_mask = T.Compose([T.ToTensor(), T.Resize((resolution, resolution), antialias=True)])
    for i in range(len(ds)):
        key, img_name = ds._record(i)[:2]
        polygon = ds.polygon(i)
        image, extent = ds.images.load(key, img_name)
        x0, y0, x1, y1 = geometry.square_window(extent, geometry.polygon_bbox(polygon), None)
        full = Image.open(ds.image_paths[key]).convert("RGB")
        expected_image = to_image(np.asarray(full)[y0:y1, x0:x1])
        canvas = Image.new("L", full.size, 255)
        ImageDraw.Draw(canvas).polygon([(int(x), int(y)) for x, y in polygon], fill=0)
        expected_mask = (to_mask(np.asarray(canvas)[y0:y1, x0:x1]) >= 0.5).float()
        s = ds.build(i)
        assert torch.allclose(s["image"], expected_image, atol=1e-6), (i, (s["image"] - expected_image).abs().max())
        assert torch.equal(s["mask"], expected_mask), i


def _jpeg(variant: str, shape=(173, 251)) -> bytes:
    import io

    rgb = cv2.GaussianBlur((np.random.default_rng(1).random(shape + (3,)) * 255).astype(np.uint8), (7, 7), 3)
    if variant == "restart":  # restart markers every 2 MCU rows (Pillow cannot write them)
        params = [cv2.IMWRITE_JPEG_RST_INTERVAL, 2 * -(-shape[1] // 16)]
        return cv2.imencode(".jpg", rgb[..., ::-1], params)[1].tobytes()
    buf = io.BytesIO()
    mode = {"gray": "L", "cmyk": "CMYK"}.get(variant, "RGB")
    subsampling = {"444": 0, "422": 1}.get(variant, 2)
    Image.fromarray(rgb).convert(mode).save(buf, "JPEG", quality=90, progressive=variant == "progressive",
                                            subsampling=subsampling)
    return buf.getvalue()


@pytest.mark.parametrize("variant", ["420", "444", "422", "progressive", "gray", "restart"])
def test_window_decode_equals_the_whole_image_decode(variant, icdar15_dir, jpeg_window):
    from textssr.data.image_io import decode_image, decode_window

    sources = [_jpeg(variant)] + ([(icdar15_dir / "img_2.jpg").read_bytes()] if variant == "420" else [])
    rng = np.random.default_rng(0)
    for data in sources:
        full = decode_image(data, variant)
        h, w = full.shape[:2]
        windows = [(0, 0, w, h), (0, 0, 1, 1), (w - 1, h - 1, w, h)]
        for _ in range(60):
            x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
            windows.append((x0, y0, int(rng.integers(x0 + 1, w + 1)), int(rng.integers(y0 + 1, h + 1))))
        for x0, y0, x1, y1 in windows:
            crop = decode_window(data, (x0, y0, x1, y1), variant)
            assert crop is not None and np.array_equal(crop, full[y0:y1, x0:x1]), (variant, (x0, y0, x1, y1))


def test_window_decode_declines_what_it_cannot_do_and_skips_truncated_jpegs(icdar15_dir, jpeg_window):
    from textssr.data import SkipSample
    from textssr.data.image_io import decode_window

    ok, png = cv2.imencode(".png", np.zeros((20, 30, 3), np.uint8))
    data = (icdar15_dir / "img_2.jpg").read_bytes()
    assert decode_window(_jpeg("cmyk"), (0, 0, 10, 10), "cmyk") is None  # no BGR conversion: decode it whole
    assert decode_window(png.tobytes(), (0, 0, 10, 10), "png") is None
    assert decode_window(b"\xff\xd8 not a jpeg \xff\xd9", (0, 0, 10, 10), "garbage") is None
    assert decode_window(data, (1300, 0, 1400, 10), "outside") is None  # beyond the 1280-px width
    with pytest.raises(SkipSample) as info:
        decode_window(data[: len(data) // 2], (0, 0, 10, 10), "truncated")
    assert info.value.reason == "image_unreadable"
