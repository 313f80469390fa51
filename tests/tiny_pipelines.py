"""Tiny, randomly initialised diffusers pipelines built offline (no hub downloads) for the
pipeline tests: CLIP tokenizers from a few-word BPE vocabulary written to a folder, text
encoders from small ``CLIPTextConfig``s, and small denoisers and VAEs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

#: The words the tiny tokenizers know (each is one token).
WORDS = ["a", "photo", "of", "red", "cat", "dog", "blue"]


def write_tokenizer_files(folder: Path) -> int:
    """A CLIP BPE vocabulary and merges for :data:`WORDS`: every word is one token.

    Returns the vocabulary size.
    """
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in sorted(set("".join(WORDS))):
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    merges = ["#version: 0.2"]
    for word in WORDS:
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            merges.append(f"{parts[0]} {parts[1]}")
            parts = [parts[0] + parts[1]] + parts[2:]
            vocab.setdefault(parts[0], len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("\n".join(merges) + "\n")
    return len(vocab)


def clip_tokenizer(folder: Path) -> tuple[Any, int]:
    """A ``CLIPTokenizer`` (16 tokens) on the vocabulary written into ``folder``, and its size."""
    import transformers

    size = write_tokenizer_files(folder)
    return transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                                      model_max_length=16), size


def tiny_sd3_pipeline(folder: Path, **scheduler_config: Any) -> Any:
    """A tiny ``StableDiffusion3Pipeline`` (seeded random weights, float32, CPU).

    Two CLIP text encoders with projection (hidden size 32) and their tokenizers, no T5 (the
    pipeline then pads with zeros, as SD3 without T5), a one-layer ``SD3Transformer2DModel``
    on 8x8 latents of 4 channels, a two-block ``AutoencoderKL`` (16x16 images) and a
    ``FlowMatchEulerDiscreteScheduler(**scheduler_config)``.
    """
    import transformers
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )

    tokenizer, size = clip_tokenizer(folder)
    torch.manual_seed(0)

    def encoder() -> Any:
        return transformers.CLIPTextModelWithProjection(transformers.CLIPTextConfig(
            bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32,
            intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
            vocab_size=size, max_position_embeddings=16, projection_dim=32))

    text_encoder, text_encoder_2 = encoder(), encoder()
    transformer = SD3Transformer2DModel(
        sample_size=8, patch_size=1, in_channels=4, num_layers=1, attention_head_dim=8,
        num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=64,
        pooled_projection_dim=64, out_channels=4)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
        norm_num_groups=4, sample_size=16, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, shift_factor=0.0609, scaling_factor=1.5035,
        use_quant_conv=False, use_post_quant_conv=False)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(**scheduler_config),
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer, text_encoder_3=None, tokenizer_3=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe
