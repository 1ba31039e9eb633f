"""Running trained models on images, folders and video; export for edge runtimes."""
from .sharpener import Sharpener, load
