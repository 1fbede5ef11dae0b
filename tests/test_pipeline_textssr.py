"""TextSSRPipeline: equal to a hand-written denoising loop, deterministic, every scheduler, every output type,
save/load round trip, dtype handling. Tiny SD-2.1-shaped models at 64 px, 2 steps."""
import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F

from diffusers_textssr import TextSSRPipeline
from textssr.models import SCHEDULERS, load_scheduler, load_unet, load_vae
from tiny_models import TINY_UNET_ARCH, save_tiny_sd21

R, LATENT = 64, 8


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    return save_tiny_sd21(str(tmp_path_factory.mktemp("sd21")))


@pytest.fixture(scope="module")
def models(sd_folder):
    vae, unet = load_vae(sd_folder).eval(), load_unet(sd_folder, TINY_UNET_ARCH).eval()
    with torch.no_grad():  # give the zero-initialised condition channels of conv_in some weight
        unet.conv_in.weight[:, 4:].normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    return vae, unet


def make_pipe(models, sd_folder, scheduler="ddpm"):
    vae, unet = models
    return TextSSRPipeline(vae=vae, unet=unet, scheduler=load_scheduler(sd_folder, scheduler))


def batch(n=2, seed=0):
    """Inputs as textssr.data.collate stacks them."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.ones(n, 1, R, R)
    masks[:, :, 20:44, 8:56] = 0.0
    image = torch.rand(n, 3, R, R, generator=g) * 2 - 1
    ttf = torch.ones(n, 25, 64, 64)
    ttf[:, :4, 16:48, 16:48] = torch.rand(n, 4, 32, 32, generator=g)
    glyph = torch.where(torch.rand(n, 3, R, R, generator=g) > 0.8, 127 / 255, 1.0)
    return ttf, glyph, image * masks, masks


def noise(n=2, seed=7):
    return torch.randn(n, 4, LATENT, LATENT, generator=torch.Generator().manual_seed(seed))


def run(pipe, inputs, **kw):
    kw.setdefault("num_inference_steps", 2)
    kw.setdefault("show_progress", False)
    return pipe(*inputs, **kw).images


def test_pipeline_equals_a_hand_written_denoising_loop(models, sd_folder):
    vae, unet = models
    pipe = make_pipe(models, sd_folder, "ddim")
    ttf, glyph, masked, masks = batch()
    latents = noise()
    got = run(pipe, (ttf, glyph, masked, masks), latents=latents, output_type="pt")

    scheduler = load_scheduler(sd_folder, "ddim")
    with torch.no_grad():
        masked_latents = vae.encode(masked).latent_dist.mode() * vae.config.scaling_factor
        glyph_latents = vae.encode(glyph).latent_dist.mode() * vae.config.scaling_factor
        small_mask = F.interpolate(masks, size=(LATENT, LATENT), mode="nearest")
        scheduler.set_timesteps(2)
        x = latents * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            model_input = torch.cat([scheduler.scale_model_input(x, t), masked_latents, glyph_latents, small_mask], 1)
            x = scheduler.step(unet(model_input, t, encoder_hidden_states=ttf).sample, t, x).prev_sample
        expected = (vae.decode(x / vae.config.scaling_factor).sample / 2 + 0.5).clamp(0, 1)
    assert got.shape == (2, 3, R, R)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_same_generator_same_images_other_seed_other_images(models, sd_folder):
    pipe = make_pipe(models, sd_folder)
    inputs = batch()
    a = run(pipe, inputs, generator=torch.Generator().manual_seed(1), output_type="np")
    b = run(pipe, inputs, generator=torch.Generator().manual_seed(1), output_type="np")
    c = run(pipe, inputs, generator=torch.Generator().manual_seed(2), output_type="np")
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_given_latents_ddpm_is_deterministic_and_batch_independent(models, sd_folder):
    pipe = make_pipe(models, sd_folder, "ddpm")
    inputs, latents = batch(), noise()
    torch.manual_seed(0)
    a = run(pipe, inputs, latents=latents, num_inference_steps=3, output_type="pt")
    torch.manual_seed(1)  # the global RNG plays no part
    b = run(pipe, inputs, latents=latents, num_inference_steps=3, output_type="pt")
    alone = run(pipe, [x[1:] for x in inputs], latents=latents[1:], num_inference_steps=3, output_type="pt")
    assert torch.equal(a, b)
    torch.testing.assert_close(alone[0], a[1], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_every_scheduler_runs(models, sd_folder, name):
    images = run(make_pipe(models, sd_folder, name), batch(1), latents=noise(1), output_type="np")
    assert images.shape == (1, R, R, 3) and np.isfinite(images).all()
    assert images.min() >= 0.0 and images.max() <= 1.0


def test_output_types(models, sd_folder):
    pipe, inputs = make_pipe(models, sd_folder), batch()
    pil = run(pipe, inputs, latents=noise())
    assert len(pil) == 2 and all(isinstance(im, PIL.Image.Image) and im.size == (R, R) for im in pil)
    arr = run(pipe, inputs, latents=noise(), output_type="np")
    assert np.array_equal(np.stack([np.asarray(im) for im in pil]), (arr * 255).round().astype(np.uint8))
    latent = run(pipe, inputs, latents=noise(), output_type="latent")
    assert latent.shape == (2, 4, LATENT, LATENT)
    as_tuple = pipe(*inputs, num_inference_steps=1, latents=noise(), output_type="np", return_dict=False,
                    show_progress=False)
    assert isinstance(as_tuple, tuple) and as_tuple[0].shape == (2, R, R, 3)


def test_progress_bar_is_shown_unless_disabled(models, sd_folder, capsys):
    pipe, inputs = make_pipe(models, sd_folder), batch(1)
    run(pipe, inputs, latents=noise(1), show_progress=True)
    assert "2/2" in capsys.readouterr().err
    run(pipe, inputs, latents=noise(1), show_progress=False)
    assert "2/2" not in capsys.readouterr().err


def test_pipeline_round_trips_through_save_pretrained(models, sd_folder, tmp_path):
    pipe = make_pipe(models, sd_folder)
    pipe.save_pretrained(tmp_path)
    loaded = TextSSRPipeline.from_pretrained(tmp_path)
    assert type(loaded.unet) is type(pipe.unet) and type(loaded.scheduler) is type(pipe.scheduler)
    inputs = batch()
    a = run(pipe, inputs, latents=noise(), output_type="pt")
    b = run(loaded, inputs, latents=noise(), output_type="pt")
    assert torch.equal(a, b)


def test_bf16_models_take_fp32_inputs(models, sd_folder):
    vae, unet = models
    pipe = TextSSRPipeline(vae=load_vae(sd_folder).to(torch.bfloat16), unet=load_unet(sd_folder, TINY_UNET_ARCH)
                           .to(torch.bfloat16), scheduler=load_scheduler(sd_folder, "ddim"))
    images = run(pipe, batch(1), latents=noise(1), output_type="pt")
    assert images.dtype == torch.bfloat16 and torch.isfinite(images.float()).all()


def test_bad_shapes_fail_in_one_line(models, sd_folder):
    pipe = make_pipe(models, sd_folder)
    ttf, glyph, masked, masks = batch()
    for args, kw, match in [((ttf, glyph[:1], masked, masks), {}, "glyph_images must have shape"),
                            ((ttf, glyph, masked, masks[:, :, :32]), {}, "masks must have shape"),
                            ((ttf, glyph, masked, masks), {"latents": noise(1)}, "latents must have shape"),
                            ((ttf, glyph, masked, masks), {"output_type": "jpg"}, "output_type")]:
        with pytest.raises(ValueError, match=match) as err:
            run(pipe, args, **kw)
        assert "\n" not in str(err.value)
