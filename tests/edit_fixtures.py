"""What test_edit.py and test_app_browser.py share: tiny random models, the words of img_1.jpg, and the pixel
regions the assertions compare."""
import cv2
import numpy as np
import pytest

GENAXIS = "377,117,463,117,465,130,378,130"  # "Genaxis Theatre" in icdar15_toy/img_1.jpg (gt_img_1.txt)
CARPARK = "376,198,422,198,422,212,376,212"  # "Carpark", same photo


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny random SD-2.1-shaped models (textssr.models.save_tiny_sd21): vae/, unet/, scheduler/."""
    from tiny_models import save_tiny_sd21
    return save_tiny_sd21(str(tmp_path_factory.mktemp("edit") / "model"))


@pytest.fixture(scope="module")
def photo_path(icdar15_dir):
    return str(icdar15_dir / "img_1.jpg")


def model_options(models, **extra):
    """``--cfg-options`` for the tiny models at 32 px, one denoising step, on the CPU."""
    opts = dict(pretrained_vae=f"{models}/vae", pretrained_unet=f"{models}/unet", scheduler_path=models,
                resolution=32, num_inference_steps=1, device="cpu", mixed_precision="no")
    opts.update(extra)
    return ["--cfg-options"] + [f"{k}={v}" for k, v in opts.items()]


def outside_box(shape, polygon, margin):
    """bool (H, W): pixels farther than ``margin`` px from the polygon's bbox — a bound on the edited area that
    does not use the code under test."""
    keep = np.ones(shape[:2], dtype=bool)
    x0, y0 = np.floor(polygon.min(axis=0)).astype(int) - margin
    x1, y1 = np.ceil(polygon.max(axis=0)).astype(int) + margin + 1
    keep[max(y0, 0):y1, max(x0, 0):x1] = False
    return keep


def text_area(shape, polygon):
    """bool (H, W): the pixels inside the polygon (OpenCV's fill)."""
    canvas = np.zeros(shape[:2], dtype=np.uint8)
    cv2.fillPoly(canvas, [np.round(polygon).astype(np.int32)], 1)
    return canvas.astype(bool)
