# train_str.py: train an OpenOCR recogniser on STR LMDBs and evaluate it on STR LMDB test sets (docs/str.md).
# Every key train_str.py reads is documented here; configs/str/tiny/ states only what differs.

# OpenOCR's own config (a path, or relative to the installed openocr package). SVTRv2 with the RCTC decoder, the
# recogniser the TextSSR paper trains on its synthetic data; its architecture, optimizer (AdamW, OneCycleLR),
# loss (CTC), ratio-bucketed LMDB loader and RecMetric are used as they are. Only data, output, schedule and the
# keys below are filled in.
openocr_config = "configs/rec/svtrv2/svtrv2_rctc.yml"
# Training data: STR LMDBs (a folder: every LMDB below it), e.g. synthesize.py's <output_dir>/lmdb, the authors'
# TextSSR-F, real-data LMDBs. ratio: the fraction of that source drawn each epoch (OpenOCR's ratio_list), in (0, 1];
# on the command line "PATH:RATIO": --cfg-options 'train_data=[output/textssr_f/lmdb:0.5,data/str/real]'.
train_data = [dict(path="output/textssr_f/lmdb", ratio=1.0)]
# Test sets: name → STR LMDB (or a folder of them). Each gets <output_dir>/eval/<name>/metrics.json: word accuracy
# case-insensitive on letters and digits (the STR benchmarks' convention, OpenOCR's `acc`) and exact (`acc_exact`).
test_data = dict()
output_dir = "output/str/svtrv2_rctc"
device = "gpu"            # "gpu": CUDA when present (OpenOCR falls back to CPU), "cpu": never CUDA
epoch_num = 20            # OpenOCR trains by epochs; it saves latest.pth after each one (what a rerun resumes from)
# None: an epoch is one pass over ratio × each source; an int: exactly that many samples per epoch, drawn afresh each
# epoch in the same proportions, so that runs on sources of different sizes train the same number of steps.
samples_per_epoch = None
batch_size = 256          # per GPU (OpenOCR's batch_size_per_card / RatioSampler first_bs; the authors' 4 GPUs × 256)
eval_batch_size = 256
learning_rate = 0.00065   # OneCycleLR peak, OpenOCR's value for 4 GPUs × 256
num_workers = 4
torch_threads = None      # torch's CPU threads (None: torch's default, one per core)
use_amp = True            # bf16 autocast (OpenOCR's use_amp)
seed = 48                 # OpenOCR's default Global.seed
# OpenOCR's augmentation op on numpy images: "SVTRAug" (geometry, deterioration, colour jitter), "ABINetAug",
# "PARSeqAug" or None. The SVTRv2 YAML's PARSeqAugPIL needs imgaug 0.4, which does not import beside numpy 2
# (our environment); where numpy < 2 and imgaug are installed, "PARSeqAug" is the same augmentation on numpy images.
augment = "SVTRAug"
character_dict = "tools/utils/EN_symbol_dict.txt"  # OpenOCR's 94 Latin characters (a path, or in the package)
max_text_length = 25
use_space_char = False    # no space class: spaces are dropped from labels (OpenOCR's rule), not counted as foreign
print_batch_step = 10
# Anything else of the OpenOCR config, merged last, section by section, e.g.
#   --cfg-options openocr_options.Architecture.Encoder.depths=[3,6,3] openocr_options.LRScheduler.warmup_epoch=1
openocr_options = dict()
