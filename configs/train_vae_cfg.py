# Stage 1 of TextSSR (method.md §5): fine-tune SD 2.1's VAE on text-region crops.
#   accelerate launch --num_processes 8 train_vae.py --config configs/train_vae_cfg.py
# This file is also the base of the CDM configs (train_diff_step1_cfg.py, train_diff_step2_cfg.py): every key
# shared by the three stages is documented here, once. Override any key on the command line with
#   --cfg-options key=value [key=value ...]

# ---- data ---------------------------------------------------------------------------------------------------
# AnyWord-lmdb folder tree(s): every leaf folder holding a data.mdb is one LMDB; a list is concatenated.
# The VAE stage reads both CDM subsets (method.md §5).
lmdb_path = ["model/AnyWord-lmdb/step1_lmdb", "model/AnyWord-lmdb/step2_lmdb"]
font_path = "AlibabaPuHuiTi-3-85-Bold.ttf"  # glyph/TTF font; absent → registry fallback (Noto Sans CJK Bold), warned
language = None                     # keep only annotations of this AnyWord language ("Latin", "Chinese"); None = all
resolution = 256                    # side of the square region crop fed to the models (px)
ttf_size = 64                       # side of one character image of the TTF stack (px)
max_len = 25                        # characters in the TTF stack (longer text is truncated and counted)
region_placement = "random"         # where the square window sits around the text (method.md §3.2); "random": the original
strict = False                      # True: the first bad sample raises instead of being skipped and counted
dataloader_num_workers = 4          # DataLoader worker processes per rank (0 = load in the training process)
dataloader_worker_nice = 0          # run the workers this many `nice` levels below training (CPU machines with few
                                    # cores: the compute threads get the cores first); 0 = as the original

# ---- models -------------------------------------------------------------------------------------------------
pretrained_model_name_or_path = "model/stable-diffusion-v2-1"  # SD 2.1 in diffusers layout (vae/ unet/ scheduler/)
# The VAE to start from: a diffusers vae folder or a training output folder (its latest checkpoint-*/vae);
# None = <pretrained_model_name_or_path>/vae; with pretrained_model_name_or_path also None, built from vae_arch.
pretrained_vae = None
vae_arch = None                     # AutoencoderKL keyword arguments for a randomly initialised VAE (tiny configs)
# The scaling_factor written into every saved vae/config.json (the CDM stages and infer.py multiply latents by it).
# None keeps the VAE's own (SD 2.1: 0.18215, the original's); a number sets it; "auto" = 1 / std of the posterior-mode
# latents of the first 64 training crops, measured at each checkpoint — for a VAE trained from scratch (tiny configs),
# whose latents are not SD's scale.
scaling_factor = None

# ---- output and checkpoints ---------------------------------------------------------------------------------
output_dir = "model/vae_ft"         # run folder: config.py, train_log.jsonl, logs/, checkpoint-<step>/
logging_dir = "logs"                # TensorBoard folder, relative to output_dir
checkpointing_steps = 50000         # save checkpoint-<step>/ every this many optimizer steps (and at the end)
checkpoints_total_limit = None      # keep only the newest N checkpoints; None keeps all
resume_from_checkpoint = "latest"   # "latest" (newest complete checkpoint in output_dir, if any), a path, or None

# ---- optimisation -------------------------------------------------------------------------------------------
seed = 3407                         # model init, data order, region placement; each rank's noise uses seed·world+rank
train_batch_size = 8                # samples per process per forward pass
gradient_accumulation_steps = 8     # forward passes per optimizer step
num_train_epochs = 100              # used only when max_train_steps is None
max_train_steps = 150000            # optimizer steps; the paper's VAE is checkpoint-150000
learning_rate = 1e-4
scale_lr = False                    # True: learning_rate × batch × accumulation × processes
lr_scheduler = "constant"           # any diffusers get_scheduler name: constant, constant_with_warmup, cosine, linear, ...
lr_warmup_steps = 0                 # optimizer steps of warm-up (schedules that have one)
adam_beta1 = 0.9
adam_beta2 = 0.999
adam_weight_decay = 1e-2
adam_epsilon = 1e-8
use_8bit_adam = False               # bitsandbytes AdamW8bit (CUDA; pip install bitsandbytes)
adam_fused = False                  # torch's fused AdamW (one kernel for all weights: ~4x faster steps on a CPU for
                                    # small models); False = the default implementation, as the original
max_grad_norm = 1.0                 # gradient-norm clip; None or 0 = no clipping
use_ema = False                     # keep an EMA of the weights (saved as <model>_ema/ in every checkpoint)
ema_decay = 0.9999                  # EMA decay (only with use_ema)
mixed_precision = None              # None (the original's): accelerate's setting — `accelerate launch --mixed_precision`,
                                    # the config file it read, else accelerate's default config file, else "no";
                                    # "no", "fp16" (GPU), "bf16" (a value here wins over accelerate's, with a warning);
                                    # "auto": on a GPU bf16 where it has native bf16 (Ampere+), else fp16; on the CPU
                                    # bf16 autocast only where a forward + backward of the first batch is timed >= 1.1x
                                    # faster than float32 (CPUs without AVX512-BF16/AMX: not even tried) — the
                                    # trainable weights stay float32 in every case; the log says what is in effect
allow_tf32 = False                  # TF32 matmuls and convolutions on Ampere+ GPUs; False leaves torch's defaults
ddp_timeout = 7200                  # seconds a rank waits for the others (rank 0 saving a ~15 GB checkpoint to slow
                                    # storage, pruning, drawing sample grids) before the run stops naming this key;
                                    # torch's own default would be 10 minutes under NCCL
gradient_checkpointing = False      # recompute activations in backward: less memory, ~30 % slower
find_unused_parameters = False      # DDP flag; only needed for a model with parameters outside the loss graph
profile = False                     # time each optimizer step's phases (data wait, VAE encode, forward, backward,
                                    # optimizer, logging) and log their means at the end (benchmarks/bench_train.py)

# ---- logging ------------------------------------------------------------------------------------------------
report_to = "tensorboard"           # "tensorboard" or None
tracker_project_name = "vae-fine-tune"  # TensorBoard run name
logging_steps = 100                 # print and record (train_log.jsonl) the loss every this many steps
image_log_steps = 5000              # every this many steps a grid of reconstructions/samples in TensorBoard; 0 = off
image_log_count = 4                 # crops in that grid
