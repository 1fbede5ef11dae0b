# The second recipe: SVTRv2 with an attention (NRTR) decoder, as UnionST (the same group's later work on synthetic
# STR data) trains it with OpenOCR; everything not set here is configs/str/train_str_cfg.py's (see its sources).
# Sources: [unionst] UnionST's published recipe, configs/rec/nrtr/svtrv2_nrtr_unionst.yml in its OpenOCR copy
# (`torchrun --nproc_per_node=8 tools/train_rec.py --c configs/rec/nrtr/svtrv2_nrtr_unionst.yml`): 40 epochs, the
# SVTRv2 encoder below, NRTRDecoder (2 layers, 12 heads, greedy), ARLoss, AdamW 0.00065 (4 GPUs × 256) with weight
# decay 0.05, OneCycle with 1.5 warm-up epochs, bf16 amp, 128×32 ratio buckets, PIL/RGB input, validation every
# 2,000 iterations; [yaml] OpenOCR 0.1.5's nrtr/svtrv2_nrtr.yml, whose decoder, loss and label coding are the same.
# Augmentation: UnionST's UnionSTAugPIL (a random 0.1–1× downscale with a random filter, JPEG quality 30–70 with
# p=0.2, then PARSeq's RandAugment) is not in OpenOCR 0.1.5, and its RandAugment needs imgaug (see train_str_cfg.py):
# this config trains with the base's `augment` (README, deviations).
#   python train_str.py --config configs/str/unionst_svtrv2_nrtr.py --cfg-options 'train_data=[...]'
_base_ = ["train_str_cfg.py"]

openocr_config = "configs/rec/nrtr/svtrv2_nrtr.yml"  # [yaml] NRTRDecoder (2 layers), ARLoss, ARLabelDecode
output_dir = "output/str/unionst_svtrv2_nrtr"
epoch_num = 40  # [unionst]
eval_step = 2000  # [unionst] eval_batch_step: [0, 2000]
# [unionst] the encoder: OpenOCR 0.1.5's svtrv2_nrtr.yml puts the first SVTR's (SVTRNet) before NRTR; UnionST's is
# SVTRv2's, with svtrv2_rctc.yml's sizes and a sequence (not 2-D) feature map for the attention decoder.
openocr_options = dict(
    Architecture=dict(
        algorithm="SVTRv2",
        Encoder=dict(name="SVTRv2LNConvTwo33", use_pos_embed=False, dims=[128, 256, 384], depths=[6, 6, 6],
                     num_heads=[4, 8, 12],
                     mixer=[["Conv"] * 6, ["Conv", "Conv", "FGlobal", "Global", "Global", "Global"], ["Global"] * 6],
                     local_k=[[5, 5], [5, 5], [-1, -1]], sub_k=[[1, 1], [2, 1], [-1, -1]], last_stage=False,
                     feat2d=False)),
)
