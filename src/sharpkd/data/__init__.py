"""Reading, degrading and splitting images: everything before the models."""
from .datasets import (DegradeCollate, FixedPairs, PairedFolder, PairTensors, SharpCrops, center_crop,
                       fixed_pair_tensors, list_images, load_images, load_split_images, paired_files, random_crop,
                       read_celeba_partition, split_folder, split_of, to_tensor, to_uint8)
from .degradations import (JPEG, CameraShakeBlur, DefocusBlur, Degradation, GaussianBlur, KernelBlur, MotionBlur,
                           OneOf, Pipeline, PRESETS, build_degradation, kernel_from_params)
from .io import DecodedImage, decode_image, read_image, read_rgb, write_image
from .make_pairs import make_pairs
