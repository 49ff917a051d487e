"""Video Loopback: img2img animation of a video with little flicker.

The engine imports nothing heavy at import time: the codec library, torch and diffusers are
imported by the modules that need them.
"""

from lib_videoloop.errors import VideoLoopError

__version__ = "0.1.0"
__all__ = ["VideoLoopError", "__version__"]
