# train_str.py: train an OpenOCR recogniser on STR LMDBs and evaluate it on STR LMDB test sets (docs/str.md).
# Every key train_str.py reads is documented here; configs/str/tiny/ states only what differs.
# Where each value comes from: [paper] the TextSSR paper; [yaml] OpenOCR's svtrv2_rctc.yml (OpenOCR 0.1.5), which
# the paper does not spell out; [unionst] UnionST's published SVTRv2 recipe (configs/str/unionst_svtrv2_nrtr.py);
# [ours] this project's choice.

# OpenOCR's own config (a path, or relative to the installed openocr package). [paper] trains SVTRv2 on its
# synthetic data; [yaml] is the RCTC variant, whose architecture, optimizer (AdamW, OneCycleLR), loss (CTC),
# ratio-bucketed LMDB loader, preprocessing (PIL, RGB, bicubic) and RecMetric are used as they are. Only data,
# output, schedule and the keys below are filled in. Supported: svtrv2_rctc, svtrv2_ctc, svtrv2_small_rctc,
# svtrv2_tiny_rctc (CTC decoding); others are refused at start-up.
openocr_config = "configs/rec/svtrv2/svtrv2_rctc.yml"
# Training data: STR LMDBs (a folder: every LMDB below it), e.g. synthesize.py's <output_dir>/lmdb, the authors'
# TextSSR-F, real-data LMDBs. ratio: the fraction of that source drawn each epoch (OpenOCR's ratio_list), in (0, 1];
# on the command line "PATH:RATIO": --cfg-options 'train_data=[output/textssr_f/lmdb:0.5,data/str/real]'.
train_data = [dict(path="output/textssr_f/lmdb", ratio=1.0)]
# Test sets [ours]: name → STR LMDB (a folder holding several: one test set per LMDB, "name/<sub-folder>").
# Each gets <output_dir>/eval/<name>/metrics.json; <output_dir>/metrics.json holds all, with each group's
# arithmetic and sample-weighted averages. Accuracy: OpenOCR's `acc` (case-insensitive on letters and digits, the
# STR benchmarks' convention) and exact (`acc_exact`).
test_data = dict()
# The standard benchmarks as OpenOCR distributes them, below benchmark_root (docs/str.md, 'Benchmarks'):
# "common6" (IIIT5k, SVT, IC13_857, IC15_1811, SVTP, CUTE80 in test/), "union14m" (Union14M-Benchmark in u14m/).
test_benchmarks = []
benchmark_root = "data/str/benchmarks"
# Validation [yaml: eval_batch_step]: an STR LMDB that is no test set, evaluated every eval_step iterations and at
# each epoch's end; the best (by acc) is kept as best.pth beside latest.pth. None: no validation, no best.pth.
val_data = None
eval_step = 500         # [yaml] eval_batch_step: [0, 500]
output_dir = "output/str/svtrv2_rctc"
device = "gpu"            # "gpu": each process its CUDA device when present, else the CPU; "cpu": never CUDA
epoch_num = 20            # [yaml] OpenOCR trains by epochs; it saves latest.pth after each one (what a rerun resumes)
# None: an epoch is one pass over ratio × each source; an int: exactly that many samples per epoch, drawn afresh each
# epoch in the same proportions, so that runs on sources of different sizes train the same number of steps [ours].
samples_per_epoch = None
batch_size = 256          # [yaml] per process (OpenOCR's batch_size_per_card, RatioSampler first_bs): 4 GPUs × 256
eval_batch_size = 256
# [yaml] OneCycleLR peak for 4 GPUs × 256 = 1,024 samples per step. On another GPU count the global batch changes
# and this value is kept as it is (OpenOCR's behaviour) unless lr_scaling="linear": learning_rate × (batch_size ×
# processes) / lr_reference_batch (the linear scaling rule).
learning_rate = 0.00065
lr_scaling = "none"
lr_reference_batch = 1024
num_workers = 4
torch_threads = None      # torch's CPU threads (None: torch's default, one per core)
use_amp = True            # [yaml] bf16 autocast in training (OpenOCR's use_amp); evaluation always runs float32
seed = 48                 # [yaml] OpenOCR's default Global.seed
# Augmentation [ours: the yaml's PARSeqAugPIL needs imgaug 0.4, which does not import beside numpy 2]: OpenOCR's op
# on numpy images, "SVTRAug" (geometry, deterioration, colour jitter), "ABINetAug", "PARSeqAug" (needs imgaug) or
# None; with the YAML's PIL loader it is applied to the decoded image as an array.
augment = "SVTRAug"
character_dict = "tools/utils/EN_symbol_dict.txt"  # [yaml] OpenOCR's 94 Latin characters (a path, or in the package)
max_text_length = 25      # [yaml]
use_space_char = False    # [yaml] no space class: spaces are dropped from labels (OpenOCR's rule)
print_batch_step = 10
# Anything else of the OpenOCR config, merged last, section by section (only keys the YAML has, with values of the
# same kind; the model, loss, decoder, metric and optimizer sections may add keywords: they are built once at
# start-up to check them), e.g.
#   --cfg-options openocr_options.Architecture.Encoder.depths=[3,6,3] openocr_options.LRScheduler.warmup_epoch=1
openocr_options = dict()
# Seconds a process waits for the others (rank 0 checking the data, evaluating the validation set, writing a
# checkpoint) before the run stops with one line naming this key.
ddp_timeout = 1800
