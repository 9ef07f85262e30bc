"""stylexport: fast neural style transfer you can ship.

The method is Johnson et al.'s feed-forward transformer trained on Gatys et al.'s VGG16 perceptual
loss, as described in "Real-time Image Style Transfer" (Wang, Guo, Lu).
"""

__version__ = "0.1.0"

from stylexport.errors import StylexportError  # noqa: E402

__all__ = ["StylexportError", "Stylizer", "__version__"]


def __getattr__(name: str):
    # ``Stylizer`` imports torch and the pipeline: only when an app asks for it, so the CLI starts fast.
    if name == "Stylizer":
        from stylexport.stylize import Stylizer

        return Stylizer
    raise AttributeError(f"module 'stylexport' has no attribute {name!r}")
