"""Edit the text of a photo in the browser: `python app.py [--config configs/tiny/infer_cfg.py] [--port 7860]`.

    python app.py                                          # the tiny demo's checkpoints (make demo), 127.0.0.1:7860
    python app.py --config configs/infer_cfg.py --cfg-options pretrained_unet=model/step2 --host 0.0.0.0

A gradio app (textssr/edit/app.py) on the same pipeline as edit.py; it loads the models once, on the first Generate.
"""
import argparse
import sys

from textssr.config.checks import run_script
from textssr.config import add_config_args
from textssr.infer.settings import InferSettings


def main(argv=None):
    parser = add_config_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]), "configs/tiny/infer_cfg.py")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on")
    args = parser.parse_args(argv)
    cfg = InferSettings.load(args.config, args.cfg_options)
    from textssr.edit.app import build_app, launch
    from textssr.edit.command import check_demo_models
    from textssr.edit.editor import Editor
    check_demo_models(cfg, args.config)
    editor = Editor(cfg)  # every config value is checked here, before the server starts
    print(f"TextSSR app on http://{args.host}:{args.port} (models load on the first Generate)", flush=True)
    launch(build_app(editor), args.host, args.port)


if __name__ == "__main__":
    sys.exit(run_script(main, resumable=False))
