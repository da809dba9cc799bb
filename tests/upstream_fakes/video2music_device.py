"""Fake of Video2Music's utilities/device.py at 0ba43560 (tests only): USE_CUDA starts False (the CUDA trap)."""
USE_CUDA = False


def use_cuda(cuda_bool):
    global USE_CUDA
    USE_CUDA = cuda_bool


def get_device():
    return "cuda:0" if USE_CUDA else "cpu"  # the fake pretends a GPU exists
