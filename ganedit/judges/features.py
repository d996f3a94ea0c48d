"""Image feature spaces that do not depend on the judge: AlexNet's conv5 features.

`alexnet_conv5()` is the feature space of the reference AM code's `features` diversity mode
(qilimk/biggan-am: `models.alexnet(pretrained=True).features`, whatever the classifier being
maximised): torchvision AlexNet's convolutional trunk up to and including conv5, its ReLU and the last
max-pool, [N, 256, 6, 6] for a 224 px input, flattened to [N, 9216]. The weights are torchvision's
`AlexNet_Weights.IMAGENET1K_V1` (the file LPIPS' AlexNet trunk uses too), cached in
`torch.hub.get_dir()/checkpoints` and downloaded there once unless offline; offline and missing, the
error names the file, the folder and the address to put there.

Preprocessing: the reference fed raw [-1, 1] pixels, nearest-neighbour resized to 224, without
normalisation. Here the whole image is resized to 224 (antialiased bilinear; short side for
non-square images, then a centre crop) and normalised with the ImageNet mean / std the weights
expect. There is no 256-then-crop-224 step as for classification: a diversity term should see the
whole image.
"""

import torch
from torch import nn

from ganedit.generators.ops import freeze
from ganedit.judges.classifiers import Preprocess, pretrained_torchvision

ALEXNET_CONV5 = "alexnet-conv5"
ALEXNET_INPUT = 224  # px: the input size of torchvision's AlexNet, where conv5 is 13x13 before its pool


class AlexNetConv5(nn.Module):
    """Frozen AlexNet conv5 features of generator images in [-1, 1]: [N, 3, H, W] -> [N, 9216].

    Args:
        network: a torchvision AlexNet (its `features` trunk is used; the classifier head is dropped).
    """

    name = ALEXNET_CONV5

    def __init__(self, network: nn.Module):
        super().__init__()
        import torchvision.models as models

        transforms = models.AlexNet_Weights.IMAGENET1K_V1.transforms()
        self.preprocess = Preprocess(ALEXNET_INPUT, ALEXNET_INPUT, transforms.mean, transforms.std)
        self.trunk = network.features
        freeze(self)

    def train(self, mode: bool = True) -> "AlexNetConv5":
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.trunk(self.preprocess(images))  # [N, 256, 6, 6]
        return features.flatten(1)  # [N, 9216]


def alexnet_conv5(*, random_weights_for_tests: bool = False) -> AlexNetConv5:
    """AlexNet conv5 with its ImageNet weights (`AlexNet_Weights.IMAGENET1K_V1`; see the module docstring).

    `random_weights_for_tests=True` builds it with random weights: for ganedit's own tests only.
    """
    import torchvision.models as models

    if random_weights_for_tests:
        return AlexNetConv5(models.alexnet(weights=None))
    weights = models.AlexNet_Weights.IMAGENET1K_V1
    return AlexNetConv5(pretrained_torchvision("alexnet", weights, f"diversity space {ALEXNET_CONV5}"))
