"""Ask your photos: the chat model over search results — answers about them, a re-rank, one question per image.

No gradio here: the Search tab (mmdemo.ui.ask) and the machine-client tools (mmdemo.ui.tools) call
these with a `ChatBackend`, so each works in process and on an inference server alike.
"""
