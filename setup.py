"""The optional C extension ``textssr.data._jpeg_window`` (window-only JPEG decoding over the system's
libjpeg-turbo); everything else about the package is in pyproject.toml. Without libjpeg-turbo's headers the
extension is skipped and the data loader decodes whole images (same samples, slower)."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("textssr.data._jpeg_window", ["textssr/data/_jpeg_window.c"], libraries=["jpeg"],
                             optional=True)])
