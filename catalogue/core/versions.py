"""Versions of the code that shapes an output but cannot be imported when the task graph loads
(it needs numpy and Pillow). Part of each view's config: bumping one re-makes the views it shapes
(Gemini answers come back from the answer store, free). The versions of light modules sit next to
what they version: `generation.prompts.PROMPT_VERSION`, `generation.retouch_steps.ADJUST_VERSION`.
"""

# generation/local_renderer.py (and the imaging it uses): bump when a rendered view changes.
LOCAL_RENDERER_VERSION = "3"
# imaging/finishing.py: bump when the finishing of a generator's answer changes.
FINISHING_VERSION = "1"
