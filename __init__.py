"""ComfyUI entry point of the oldphoto node pack.

ComfyUI imports this folder as a package and reads the two mappings below. The nodes live in
``nodes/``; the engine (``oldphoto_core``) never imports ComfyUI.
"""

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
