"""Prompt-template sets and preset label sets, as data.

The OpenAI template sets and ImageNet class names come from `open_clip.zero_shot_metadata`
(imported on first use: it pulls in torch). A template is a string with one `{}` for the label.
"""

from __future__ import annotations

import functools

from mmdemo.errors import UserFacingError

DEFAULT_TEMPLATE = "a photo of a {}."
CUSTOM = "custom"

# name -> what the UI shows
TEMPLATE_SETS = {
    CUSTOM: "Custom template",
    "openai-7": "OpenAI's 7-template subset",
    "openai-80": "OpenAI's 80 templates",
}

CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

_CIFAR100_NAMES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
    "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
    "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster "
    "man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
    "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
    "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger "
    "tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"
)
CIFAR100 = tuple(name.replace("_", " ") for name in _CIFAR100_NAMES.split())

PRESETS = ("CIFAR-10", "CIFAR-100", "ImageNet-1k")


def preset_labels(name: str) -> tuple[str, ...]:
    """The class names of a preset label set."""
    if name == "CIFAR-10":
        return CIFAR10
    if name == "CIFAR-100":
        return CIFAR100
    if name == "ImageNet-1k":
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

        return tuple(IMAGENET_CLASSNAMES)
    raise UserFacingError(f"Unknown label preset '{name}'; choose one of {', '.join(PRESETS)}.")


@functools.cache
def _openai_templates(which: str) -> tuple[str, ...]:
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

    lambdas = SIMPLE_IMAGENET_TEMPLATES if which == "openai-7" else OPENAI_IMAGENET_TEMPLATES
    return tuple(fn("{}") for fn in lambdas)  # each is `lambda c: f"...{c}..."`


def templates_for(template_set: str, custom: str = DEFAULT_TEMPLATE) -> tuple[str, ...]:
    """The templates of a set; for "custom", the one template given (checked)."""
    if template_set in ("openai-7", "openai-80"):
        return _openai_templates(template_set)
    if template_set != CUSTOM:
        raise UserFacingError(f"Unknown template set '{template_set}'; choose one of {', '.join(TEMPLATE_SETS)}.")
    template = (custom or "").strip() or DEFAULT_TEMPLATE
    if template.count("{}") != 1:
        raise UserFacingError("The template needs exactly one {} where the label goes, e.g. 'a photo of a {}.'")
    return (template,)
