"""modules.devices: the device the WebUI generates on, a torch.device as in the real one."""

import torch

device = torch.device("cpu")
