"""Visual question answering: chat turns with images over a Qwen-VL model."""
