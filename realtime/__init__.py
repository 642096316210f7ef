"""cartoon-cam: DCT-Net cartoon stylization for webcams, videos and images."""

__version__ = "0.1.0"
