"""A random-weight checkpoint in SD1.5's layout, small enough to run on a CPU in a blink.

    python tiny_checkpoint.py OUT.safetensors        (with Stability-AI/stablediffusion on PYTHONPATH)
    python tiny_checkpoint.py --clip-tokenizer DIR   (openai/clip-vit-large-patch14's tokenizer files)

Run by rig.py inside a WebUI's venv (torch, transformers, safetensors and open_clip are there).
The UNet keeps what Forge checks to call a model SD1.5 (model_channels 320, context 768, no
linear projections) and drops the rest to one level of one block; OUT.yaml beside the
checkpoint tells AUTOMATIC1111 that shape. Text encoder and VAE have SD1.5's real shapes,
because Forge builds them from its fixed SD1.5 configs.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

UNET = {
    "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 320, "attention_resolutions": [1],
    "num_res_blocks": 1, "channel_mult": [1], "num_heads": 8, "use_spatial_transformer": True,
    "transformer_depth": 1, "context_dim": 768, "use_checkpoint": False, "legacy": False,
}  # fmt: skip
VAE = {
    "double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
    "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0,
}  # fmt: skip
CLIP_TEXT = {
    "architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "vocab_size": 49408, "hidden_size": 768,
    "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12, "max_position_embeddings": 77,
    "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "projection_dim": 768, "bos_token_id": 0,
    "eos_token_id": 2, "pad_token_id": 1, "torch_dtype": "float32",
}  # fmt: skip


def _yaml(unet: dict, vae: dict) -> str:
    """The v1-inference config, with this checkpoint's UNet."""

    def block(d: dict, indent: int) -> str:
        return "".join(f"{' ' * indent}{k}: {json.dumps(v)}\n" for k, v in d.items())

    return (
        "model:\n  base_learning_rate: 1.0e-04\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n  params:\n"
        "    linear_start: 0.00085\n    linear_end: 0.0120\n    num_timesteps_cond: 1\n    log_every_t: 200\n"
        '    timesteps: 1000\n    first_stage_key: "jpg"\n    cond_stage_key: "txt"\n    image_size: 64\n'
        "    channels: 4\n    cond_stage_trainable: false\n    conditioning_key: crossattn\n"
        "    monitor: val/loss_simple_ema\n    scale_factor: 0.18215\n    use_ema: False\n"
        "    unet_config:\n      target: ldm.modules.diffusionmodules.openaimodel.UNetModel\n      params:\n"
        + block(unet, 8)
        + "    first_stage_config:\n      target: ldm.models.autoencoder.AutoencoderKL\n      params:\n"
        "        embed_dim: 4\n        monitor: val/rec_loss\n        ddconfig:\n"
        + block(vae, 10)
        + "        lossconfig:\n          target: torch.nn.Identity\n"
        "    cond_stage_config:\n      target: ldm.modules.encoders.modules.FrozenCLIPEmbedder\n"
    )


def make_checkpoint(out: Path) -> None:
    import torch
    from ldm.modules.diffusionmodules.model import Decoder, Encoder
    from ldm.modules.diffusionmodules.openaimodel import UNetModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    parts = {
        "model.diffusion_model.": UNetModel(**UNET),
        "first_stage_model.encoder.": Encoder(**VAE),
        "first_stage_model.decoder.": Decoder(**VAE),
        "first_stage_model.quant_conv.": torch.nn.Conv2d(8, 8, 1),
        "first_stage_model.post_quant_conv.": torch.nn.Conv2d(4, 4, 1),
        "cond_stage_model.transformer.": CLIPTextModel(CLIPTextConfig(**CLIP_TEXT)),
    }
    state = {}
    generator = torch.Generator().manual_seed(1)
    for prefix, module in parts.items():
        for key, weights in module.state_dict().items():
            tensor = weights.detach().clone()
            if tensor.is_floating_point() and key.endswith("bias") and not tensor.any():
                # All-zero biases make CLIP's hidden states collapse, and the WebUI's prompt
                # emphasis then divides by a zero mean: small random ones keep every step finite.
                tensor = torch.randn(tensor.shape, generator=generator) * 0.02
            state[prefix + key] = tensor.half() if tensor.is_floating_point() else tensor
    if "cond_stage_model.transformer.text_model.embeddings.position_ids" not in state:
        state["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77).unsqueeze(0)
    save_file(state, str(out))
    out.with_suffix(".yaml").write_text(_yaml(UNET, VAE), encoding="utf-8")
    print(f"{out}: {sum(t.numel() for t in state.values()) / 1e6:.1f} M values")


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's byte-to-symbol table (the same as GPT-2's)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def make_clip_tokenizer(folder: Path) -> None:
    """vocab.json and merges.txt as openai/clip-vit-large-patch14 has them, from open_clip's copy of
    CLIP's BPE merges (the vocabulary is derived from the merges the same way CLIP does)."""
    import open_clip

    bpe = Path(open_clip.__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
    with gzip.open(bpe) as handle:
        merges = handle.read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    pairs = [tuple(m.split()) for m in merges]
    vocab = list(_bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab] + ["".join(p) for p in pairs] + ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({v: i for i, v in enumerate(vocab)}), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(" ".join(p) for p in pairs) + "\n", encoding="utf-8"
    )
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
               "pad_token": "<|endoftext|>"}  # fmt: skip
    (folder / "special_tokens_map.json").write_text(json.dumps(special), encoding="utf-8")
    config = {**special, "model_max_length": 77, "do_lower_case": True, "tokenizer_class": "CLIPTokenizer"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "config.json").write_text(json.dumps(CLIP_TEXT), encoding="utf-8")
    print(f"{folder}: CLIP tokenizer with {len(vocab)} tokens")


if __name__ == "__main__":
    if sys.argv[1] == "--clip-tokenizer":
        make_clip_tokenizer(Path(sys.argv[2]))
    else:
        make_checkpoint(Path(sys.argv[1]))
