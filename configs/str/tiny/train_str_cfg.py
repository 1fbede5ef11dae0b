# A tiny SVTRv2 (RCTC) that trains on 2 CPU cores in minutes: what `make str-demo` and the tests run.
_base_ = ["../train_str_cfg.py"]

train_data = [dict(path="data/str/tiny_train", ratio=1.0)]
test_data = dict(tiny_bench="data/str/tiny_bench")
output_dir = "output/str/tiny"
device = "cpu"
# 16 epochs of 1,600 samples, batch 16: 1,600 steps (± a partial batch per width bucket), whatever the source.
epoch_num = 16
samples_per_epoch = 1600
batch_size = 16
eval_batch_size = 64
learning_rate = 0.001
num_workers = 1
# One torch thread beside the one loader worker: on 2 cores shared with other work, 2 threads' OpenMP barriers
# stall whenever a core is taken (we measured a tiny CDM step ~40x slower so); one thread each keeps both cores busy.
torch_threads = 1
augment = None             # the tiny corpus is clean renderings; SVTRAug's distortions slow learning at this budget
use_amp = False
print_batch_step = 25
openocr_options = dict(
    Architecture=dict(Encoder=dict(
        dims=[32, 64, 96], depths=[1, 2, 1], num_heads=[1, 2, 3],
        mixer=[["Conv"], ["Conv", "FGlobal"], ["Global"]])),
    # OneCycleLR (the YAML's) leaves a model this small on CTC's all-blank plateau at this budget; a constant lr
    # leaves it within ~100 steps (measured on one batch: loss 13.4 after 150 OneCycle steps, 1.8 constant).
    LRScheduler=dict(name="ConstLR", warmup_epoch=0),
    # Half OpenOCR's input sizes (64x64, 96x48, 112x40, 128x32 by aspect ratio): 1.6x the steps per second, and CTC
    # leaves its all-blank plateau after ~500 steps instead of ~950 (tiny corpus, batch 16; at full size, 1,600
    # steps of 8 or 400 of 32 never left it).
    Train=dict(dataset=dict(base_shape=[[32, 32], [48, 24], [56, 20], [64, 16]])),
    Eval=dict(dataset=dict(base_shape=[[32, 32], [48, 24], [56, 20], [64, 16]])),
)
