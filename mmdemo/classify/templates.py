"""Prompt-template sets and preset label sets, as data.

The OpenAI template sets and ImageNet class names come from `open_clip.zero_shot_metadata`
(imported on first use: it pulls in torch). A template is a string with one `{}` for the label.
"""

from __future__ import annotations

import functools

from mmdemo.errors import UserFacingError
from mmdemo.i18n import has_cjk

DEFAULT_TEMPLATE = "a photo of a {}."
CUSTOM = "custom"
CHINESE = "zh"

# name -> what the UI shows (its words are the locale keys classify.set.<name>)
TEMPLATE_SETS = {
    CUSTOM: "Custom template",
    "openai-7": "OpenAI's 7-template subset",
    "openai-80": "OpenAI's 80 templates",
    CHINESE: "Chinese templates",
}
# A small Chinese ensemble in the spirit of OpenAI's 7-template subset (a photo of a {}, a blurry,
# close-up, low-resolution photo, a painting), written as Chinese captions phrase them.
CHINESE_TEMPLATES = (
    "一张{}的照片。",
    "一张{}的图片。",
    "一张模糊的{}的照片。",
    "一张{}的特写照片。",
    "一张{}的低分辨率照片。",
    "一幅{}的画。",
    "一张好看的{}的照片。",
)

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
# The CIFAR-10 classes as Chinese course material names them. CIFAR-100 and ImageNet-1k stay in
# English: there is no Chinese list of their names as settled as this one.
CIFAR10_ZH = ("飞机", "汽车", "鸟", "猫", "鹿", "狗", "青蛙", "马", "船", "卡车")

PRESETS = ("CIFAR-10", "CIFAR-10 (中文)", "CIFAR-100", "ImageNet-1k")


def preset_labels(name: str) -> tuple[str, ...]:
    """The class names of a preset label set."""
    if name == "CIFAR-10":
        return CIFAR10
    if name == "CIFAR-10 (中文)":
        return CIFAR10_ZH
    if name == "CIFAR-100":
        return CIFAR100
    if name == "ImageNet-1k":
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

        return tuple(IMAGENET_CLASSNAMES)
    raise UserFacingError(key="classify.unknown_preset", name=name, choices=", ".join(PRESETS))


@functools.cache
def _openai_templates(which: str) -> tuple[str, ...]:
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

    lambdas = SIMPLE_IMAGENET_TEMPLATES if which == "openai-7" else OPENAI_IMAGENET_TEMPLATES
    return tuple(fn("{}") for fn in lambdas)  # each is `lambda c: f"...{c}..."`


def templates_for(template_set: str, custom: str = DEFAULT_TEMPLATE) -> tuple[str, ...]:
    """The templates of a set; for "custom", the one template given (checked)."""
    if template_set in ("openai-7", "openai-80"):
        return _openai_templates(template_set)
    if template_set == CHINESE:
        return CHINESE_TEMPLATES
    if template_set != CUSTOM:
        raise UserFacingError(key="classify.unknown_set", name=template_set, choices=", ".join(TEMPLATE_SETS))
    template = (custom or "").strip() or DEFAULT_TEMPLATE
    if template.count("{}") != 1:
        raise UserFacingError(key="classify.template_needs_slot")
    return (template,)


def templates_for_labels(
    template_set: str, custom: str, labels: list[str], multilingual: bool
) -> tuple[tuple[str, ...], bool]:
    """`templates_for`, except that Chinese labels for a multilingual model get the Chinese templates
    instead of English ones (an English sentence around a Chinese word is not how either language
    captions a photo). The user's own custom template is kept as typed. Returns (templates, switched)."""
    templates = templates_for(template_set, custom)
    english = template_set in ("openai-7", "openai-80") or templates == (DEFAULT_TEMPLATE,)
    chinese = bool(labels) and sum(has_cjk(label) for label in labels) * 2 > len(labels)  # most labels
    if multilingual and english and chinese:
        return CHINESE_TEMPLATES, True
    return templates, False
