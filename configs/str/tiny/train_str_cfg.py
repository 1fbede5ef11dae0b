# A tiny SVTRv2 (RCTC) that trains on 2 CPU cores in minutes: what `make str-demo` and the tests run.
_base_ = ["../train_str_cfg.py"]

train_data = [dict(path="data/str/tiny_train", ratio=1.0)]
test_data = dict(tiny_bench="data/str/tiny_bench")
output_dir = "output/str/tiny"
device = "cpu"
epoch_num = 8
samples_per_epoch = 1600   # 50 steps of 32 per epoch, whatever the source: 400 steps in all
batch_size = 32
eval_batch_size = 64
learning_rate = 0.002
num_workers = 1
use_amp = False
print_batch_step = 25
openocr_options = dict(
    Architecture=dict(Encoder=dict(
        dims=[32, 64, 96], depths=[1, 2, 1], num_heads=[1, 2, 3],
        mixer=[["Conv"], ["Conv", "FGlobal"], ["Global"]])),
    LRScheduler=dict(warmup_epoch=1),
)
