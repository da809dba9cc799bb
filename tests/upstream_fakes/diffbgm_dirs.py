"""Fake of Diff-BGM's diffbgm/dirs.py at c5a0e8a2 (tests only): the same cwd-relative paths and import-time mkdirs
(non-recursive: ./result must exist in the working directory)."""
import os

DATA_DIR = "data/LOP_4_bin_pnt"
TRAIN_SPLIT_DIR = "data/train_split_pnt"
POP909_DATA_DIR = "data/POP909_4_bin_pnt_8bar"
DEMO_FOLDER = "./demo"
RESULT_PATH = "./result/symmv"

if not os.path.exists(DEMO_FOLDER):
    os.mkdir(DEMO_FOLDER)

if not os.path.exists(RESULT_PATH):
    os.mkdir(RESULT_PATH)
