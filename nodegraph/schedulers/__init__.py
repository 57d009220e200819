"""Diffusion schedulers, implemented natively to give exactly diffusers' numbers.

    s = create_scheduler(json.load(open("scheduler_config.json")), name="euler_a")
    s.set_timesteps(25)
    x = x * s.init_noise_sigma
    for t in s.timesteps:
        x = s.step(model(s.scale_model_input(x, t), t), t, x, generator=g)
"""

from .base import BaseScheduler
from .config import FrozenConfig, SchedulerConfigError
from .ddim import DDIMScheduler
from .ddpm import DDPMScheduler
from .dpm_multistep import DPMSolverMultistepScheduler
from .euler import EulerDiscreteScheduler
from .euler_ancestral import EulerAncestralDiscreteScheduler
from .lms import LMSDiscreteScheduler
from .pndm import PNDMScheduler
from .registry import SCHEDULER_CLASSES, SCHEDULER_NAMES, create_scheduler, scheduler_class
from .unipc import UniPCMultistepScheduler

__all__ = [
    "SCHEDULER_CLASSES", "SCHEDULER_NAMES", "BaseScheduler", "DDIMScheduler", "DDPMScheduler",
    "DPMSolverMultistepScheduler", "EulerAncestralDiscreteScheduler", "EulerDiscreteScheduler", "FrozenConfig",
    "LMSDiscreteScheduler", "PNDMScheduler", "SchedulerConfigError", "UniPCMultistepScheduler", "create_scheduler",
    "scheduler_class",
]
