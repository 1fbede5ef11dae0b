# The second recipe: SVTRv2 with an attention (NRTR) decoder, as UnionST (the same group's later work on synthetic
# STR data) trains it with OpenOCR; everything not set here is configs/str/train_str_cfg.py's (see its sources).
# Sources: [unionst] UnionST's README: `torchrun --nproc_per_node=8 tools/train_rec.py --c
# configs/rec/nrtr/svtrv2_nrtr_unionst.yml` (SVTRv2 encoder, NRTR decoder); [issue] 40 epochs as its published
# recipe states; [yaml] OpenOCR 0.1.5's nrtr/svtrv2_nrtr.yml (decoder, AR loss, label coding) and
# svtrv2/svtrv2_rctc.yml (the SVTRv2 encoder). UnionST's own YAML file (augmentation values included) is not in
# OpenOCR 0.1.5: where it differs from these values, its values win.
#   python train_str.py --config configs/str/unionst_svtrv2_nrtr.py --cfg-options 'train_data=[...]'
_base_ = ["train_str_cfg.py"]

openocr_config = "configs/rec/nrtr/svtrv2_nrtr.yml"  # [yaml] NRTRDecoder (2 layers), ARLoss, ARLabelDecode
output_dir = "output/str/unionst_svtrv2_nrtr"
epoch_num = 40  # [unionst]
# [yaml] OpenOCR 0.1.5's svtrv2_nrtr.yml puts the first SVTR's encoder (SVTRNet) before NRTR; the recipe's is
# SVTRv2's, with svtrv2_rctc.yml's sizes; a sequence (not 2-D) feature map for the attention decoder.
openocr_options = dict(
    Architecture=dict(
        algorithm="SVTRv2",
        Encoder=dict(name="SVTRv2LNConvTwo33", use_pos_embed=False, dims=[128, 256, 384], depths=[6, 6, 6],
                     num_heads=[4, 8, 12],
                     mixer=[["Conv"] * 6, ["Conv", "Conv", "FGlobal", "Global", "Global", "Global"], ["Global"] * 6],
                     local_k=[[5, 5], [5, 5], [-1, -1]], sub_k=[[1, 1], [2, 1], [-1, -1]], last_stage=False,
                     feat2d=False)),
)
