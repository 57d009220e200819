"""The fixture itself: diffusers' ZImagePipeline loads the saved folder and draws an image from it."""

import torch


def test_diffusers_pipeline_loads_and_runs_the_tiny_folder(tiny_z_image):
    from diffusers import ZImagePipeline

    pipe = ZImagePipeline.from_pretrained(tiny_z_image)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.tokenizer.apply_chat_template([{"role": "user", "content": "a cat"}], tokenize=False,
                                              add_generation_prompt=True, enable_thinking=True) == \
        "<|im_start|>user\na cat<|im_end|>\n<|im_start|>assistant\n"
    assert pipe.transformer.cap_pad_token.abs().min() > 0 and pipe.transformer.x_pad_token.abs().min() > 0
    images = pipe("a cat", height=32, width=48, num_inference_steps=2, guidance_scale=0.0, output_type="np",
                  generator=torch.Generator("cpu").manual_seed(0)).images
    assert images.shape == (1, 32, 48, 3) and images.std() > 0.05
